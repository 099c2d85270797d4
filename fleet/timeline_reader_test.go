package fleet_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
	"github.com/riptrace/riptrace/internal/testsupport"
)

// TestTimelineReaderSlowIsNotQuiet: a live reader that receives nothing
// for a while because its messages are held up on the way to it (a loaded
// machine, a slow link) must not take the stream for quiet and move the
// timeline on by its own clock: it would release a hit before one that
// ran earlier, already stored, and mark that one late, where a replay of
// the same stream places both in order. The live reader and a replay show
// the same timeline.
func TestTimelineReaderSlowIsNotQuiet(t *testing.T) {
	s := fleettest.RunServer(t)
	pub := fleettest.Connect(t, s)
	link := newPausableLink(t, s.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := fleet.Connect(ctx, "nats://"+link.addr, fleet.ClientOptions{Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	live, err := c.Timeline(ctx, fleet.HitOptions{}, fleet.TimelineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	placed := make(chan fleet.Placed, 8)
	go func() {
		for {
			p, err := live.Next(ctx)
			if err != nil {
				return
			}
			placed <- p
		}
	}()

	// Two agents, a and b, promise that each hit reaches the stream
	// within a second of its capture, and that all they captured before
	// base - 600 ms is in. a's hit h1 ran at base - 400 ms, b's h0 at
	// base - 500 ms: h0 ran first, and comes within b's promise.
	base := time.Now()
	clock := &fleet.ClockReading{Offset: 0, Bound: 1000}
	for _, host := range []string{"a", "b"} {
		w := fleet.Watermark{Host: host, Time: base.Add(-600 * time.Millisecond).UnixNano(), Lag: fleet.Duration(time.Second), Clock: clock}
		if _, err := pub.JetStream().Publish(ctx, pub.Subjects().Watermark(host, "tp"), fleet.Encode(&w)); err != nil {
			t.Fatal(err)
		}
	}
	h1 := fleet.Hit{Tracepoint: "tp", Host: "a", Pid: 1, Function: "h1", Time: base.Add(-400 * time.Millisecond).UnixNano(), Clock: clock}
	if err := pub.PublishHit(ctx, &h1); err != nil {
		t.Fatal(err)
	}
	end, err := pub.HitStreamEnd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	testsupport.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if n := live.LastSeq(); n < end {
			return errors.New("the live reader has not read h1")
		}
		return nil
	})
	// h0 is stored while the link to the live reader is held up: for a
	// second and a half, far longer than the reader waits for a message.
	link.pause()
	h0 := fleet.Hit{Tracepoint: "tp", Host: "b", Pid: 2, Function: "h0", Time: base.Add(-500 * time.Millisecond).UnixNano(), Clock: clock}
	if err := pub.PublishHit(ctx, &h0); err != nil {
		t.Fatal(err)
	}
	var got []fleet.Placed
	heldUp := time.After(1500 * time.Millisecond)
	for held := true; held; {
		select {
		case p := <-placed:
			t.Errorf("while held up, the live reader placed %s (late %v): it took the stream for quiet", p.Function, p.Late)
			got = append(got, p)
		case <-heldUp:
			held = false
		}
	}
	link.resume()
	deadline := time.After(10 * time.Second)
	for len(got) < 2 {
		select {
		case p := <-placed:
			got = append(got, p)
		case <-deadline:
			t.Fatalf("the live reader placed %s, want 2 hits", describe(got))
		}
	}

	end, err = pub.HitStreamEnd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	replay, err := pub.Timeline(ctx, fleet.HitOptions{Replay: true, Until: end}, fleet.TimelineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer replay.Close()
	var want []fleet.Placed
	for {
		p, err := replay.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, p)
	}
	if len(want) != 2 || want[0].Function != "h0" || want[0].Late || want[1].Late {
		t.Fatalf("the replay placed %s, want h0 then h1, neither late", describe(want))
	}
	for i := range want {
		if got[i].Seq != want[i].Seq || got[i].Late != want[i].Late || got[i].Uncertain != want[i].Uncertain {
			t.Fatalf("the live reader placed %s, the replay %s", describe(got), describe(want))
		}
	}
}

func describe(ps []fleet.Placed) string {
	s := ""
	for _, p := range ps {
		s += " " + p.Function
		if p.Late {
			s += " (late)"
		}
		if p.Uncertain {
			s += " (uncertain)"
		}
	}
	return "[" + s + " ]"
}

// pausableLink relays TCP connections to a server; pause holds up what the
// server sends until resume.
type pausableLink struct {
	addr string

	mu     sync.Mutex // guards paused
	paused chan struct{}
}

func newPausableLink(t *testing.T, target string) *pausableLink {
	t.Helper()
	l := &pausableLink{}
	copyUp := func(dst, src net.Conn) { io.Copy(dst, src) }
	l.addr = testsupport.Relay(t, "127.0.0.1:0", target, copyUp, l.relay)
	// Registered after the relay's: runs before it, so that no pump
	// waits paused while the relay waits for the pumps.
	t.Cleanup(l.resume)
	return l
}

// relay copies from the server to the client, waiting while paused.
func (l *pausableLink) relay(dst, src net.Conn) {
	b := make([]byte, 32<<10)
	for {
		n, err := src.Read(b)
		l.mu.Lock()
		wait := l.paused
		l.mu.Unlock()
		if wait != nil {
			<-wait
		}
		if n > 0 {
			if _, err := dst.Write(b[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (l *pausableLink) pause() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.paused == nil {
		l.paused = make(chan struct{})
	}
}

func (l *pausableLink) resume() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.paused != nil {
		close(l.paused)
		l.paused = nil
	}
}
