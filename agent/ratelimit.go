package agent

import "time"

// TokenBucket is a token bucket allowing rate hits per second with a burst of
// rate. A rate of zero or less allows everything.
type TokenBucket struct {
	rate   float64
	tokens float64
	last   time.Time
}

// Init sets the rate; the bucket starts full.
func (b *TokenBucket) Init(rate int) {
	b.rate = float64(rate)
	b.tokens = b.rate
}

// Take takes a token at now, if there is one.
func (b *TokenBucket) Take(now time.Time) bool {
	if b.rate <= 0 {
		return true
	}
	if !b.last.IsZero() {
		b.tokens = min(b.rate, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
