package fleet

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go"
)

// ClockReading is an agent's estimate of its clock against the server's:
// the server's time is the agent's plus Offset, give or take Bound. Both
// are in nanoseconds.
type ClockReading struct {
	Offset int64 `json:"offset"`
	Bound  int64 `json:"bound"`
}

func (r ClockReading) String() string {
	return fmt.Sprintf("%+.3fms ±%.3fms", float64(r.Offset)/1e6, float64(r.Bound)/1e6)
}

// ClockRequest is the payload of the clock subject: Sent is the agent's
// time when it asked, echoed back so that a late reply to an earlier
// request is not taken for this one's.
type ClockRequest struct {
	Header
	Sent int64 `json:"sent"`
}

// ClockReply answers a ClockRequest with the server's time.
type ClockReply struct {
	Header
	Sent   int64 `json:"sent"`
	Server int64 `json:"server"`
}

// Clock parameters. The drift allowance is what an undisciplined quartz
// oscillator may gain or lose (NTP assumes 15 ppm; 100 is generous), added
// to the bound for the time since the sample was taken; samples older than
// clockWindow are forgotten, so a change of offset (an NTP step on either
// side) is followed within that window.
const (
	clockDriftPPM = 20
	clockWindow   = 2 * time.Minute
	clockSamples  = 64
)

// clockSample is one exchange: at agent time At, the server's time was the
// agent's plus Offset, within RTT/2.
type clockSample struct {
	At     time.Time
	Offset time.Duration
	RTT    time.Duration
}

// Clock estimates an agent's clock offset to the server from Cristian
// exchanges (the agent sends at t0, the server answers its time ts, the
// agent receives at t3): the server's clock read ts somewhere between t0
// and t3, so offset = ts - (t0+t3)/2 within (t3-t0)/2. The estimate in
// force is the sample with the smallest error bound now: its RTT/2 plus
// the drift allowance since it was taken. A zero Clock knows nothing.
//
// Clock is not safe for concurrent use; the agent guards it.
type Clock struct {
	samples []clockSample
	// best is the sample Reading chose last, at bestAt; ok says it is
	// still one of samples.
	best   int
	bestAt time.Time
	ok     bool
}

// clockReuse is how long Reading keeps to the sample it chose: an agent
// asks it for each hit it publishes, and choosing among the samples was a
// twentieth of its CPU per hit. Every sample's bound grows alike with
// time, but for the drift allowance rounded to the millisecond, so within
// clockReuse another sample can only have become better by less than the
// allowance of clockReuse (20 ns): the bound given is still that of the
// sample, and true.
const clockReuse = time.Millisecond

// Add records one exchange. It refuses (returns false) an exchange whose
// times are not in order, which a clock stepped between t0 and t3 gives.
func (c *Clock) Add(t0, ts, t3 time.Time) bool {
	rtt := t3.Sub(t0)
	if rtt < 0 {
		return false
	}
	mid := t0.Add(rtt / 2)
	s := clockSample{At: t3, Offset: ts.Sub(mid), RTT: rtt}
	c.samples = append(c.samples, s)
	if len(c.samples) > clockSamples {
		c.samples = c.samples[len(c.samples)-clockSamples:]
	}
	c.ok = false
	return true
}

// Reading returns the estimate in force at agent time now, and false if no
// sample younger than clockWindow exists.
func (c *Clock) Reading(now time.Time) (ClockReading, bool) {
	if c.ok && !now.Before(c.bestAt) && now.Sub(c.bestAt) < clockReuse {
		if s := c.samples[c.best]; now.Sub(s.At) <= clockWindow {
			return ClockReading{Offset: int64(s.Offset), Bound: int64(sampleBound(s, now))}, true
		}
	}
	c.ok = false
	kept := c.samples[:0]
	for _, s := range c.samples {
		if age := now.Sub(s.At); age <= clockWindow && age >= -clockWindow {
			kept = append(kept, s)
		}
	}
	c.samples = kept
	best, bound := -1, time.Duration(math.MaxInt64)
	for i, s := range c.samples {
		if b := sampleBound(s, now); b < bound {
			best, bound = i, b
		}
	}
	if best < 0 {
		return ClockReading{}, false
	}
	c.best, c.bestAt, c.ok = best, now, true
	return ClockReading{Offset: int64(c.samples[best].Offset), Bound: int64(bound)}, true
}

// sampleBound is the error bound of s at now: half its round trip, plus
// what two clocks may drift apart since, plus a microsecond for the
// resolution of the times exchanged.
func sampleBound(s clockSample, now time.Time) time.Duration {
	age := now.Sub(s.At)
	if age < 0 {
		age = -age
	}
	return s.RTT/2 + age/1e6*clockDriftPPM + time.Microsecond
}

// ServeClock answers clock requests with the time of this process, the
// reference clock of the fleet's timeline, until stop is called or the
// client closed. `riptrace server` runs it; so do tests that run agents on
// a server of their own.
func (c *Client) ServeClock() (stop func(), err error) {
	sub, err := c.nc.Subscribe(c.subj.Clock(), func(m *nats.Msg) {
		now := time.Now().UnixNano()
		var req ClockRequest
		if err := Decode(m.Data, "clock request", &req); err != nil {
			m.Respond(Encode(&ErrorReply{Error: AsError(err)}))
			return
		}
		m.Respond(Encode(&ClockReply{Sent: req.Sent, Server: now}))
	})
	if err != nil {
		return nil, fmt.Errorf("serving the clock on %s: %w", c.subj.Clock(), err)
	}
	if err := c.nc.Flush(); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("serving the clock on %s: %w", c.subj.Clock(), err)
	}
	return func() { sub.Unsubscribe() }, nil
}

// AskClock makes one exchange with the clock server: it returns the times
// it sent and received on the agent's clock (now) and the server's time.
// A request nobody answers fails with nats.ErrNoResponders.
func (c *Client) AskClock(ctx context.Context, now func() time.Time) (t0, ts, t3 time.Time, err error) {
	t0 = now()
	msg, err := c.nc.RequestWithContext(ctx, c.subj.Clock(), Encode(&ClockRequest{Sent: t0.UnixNano()}))
	t3 = now()
	if err != nil {
		return t0, ts, t3, fmt.Errorf("asking the server's clock: %w", err)
	}
	var r ClockReply
	if err := Decode(msg.Data, "clock reply", &r); err != nil {
		return t0, ts, t3, fmt.Errorf("reading the server's clock: %w", err)
	}
	if r.Sent != t0.UnixNano() {
		return t0, ts, t3, fmt.Errorf("reading the server's clock: the reply is to another request")
	}
	return t0, time.Unix(0, r.Server), t3, nil
}
