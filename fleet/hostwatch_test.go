package fleet_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
	"github.com/riptrace/riptrace/internal/testsupport"
)

// TestWatchHosts lists hosts from their heartbeats without asking any
// agent, asks profile.get only of the hosts selected and only when their
// processes changed, and sees a host fall silent and withdraw.
func TestWatchHosts(t *testing.T) {
	t.Cleanup(checkNoGoroutineLeak(t))
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := slog.New(slog.DiscardHandler)

	// Three agents' halves on one connection: each answers profile.get
	// and counts how often it is asked.
	var mu sync.Mutex
	asked := map[string]int{}
	for _, host := range []string{"a1", "a2", "b1"} {
		stop, err := c.ServeHost(host, fleet.HostHandlers{
			Profile: func(*nats.Msg) fleet.Message {
				mu.Lock()
				asked[host]++
				mu.Unlock()
				return &fleet.Profile{Host: fleet.HostInfo{Name: host}, Processes: []fleet.Process{{Pid: 1, Exe: "/bin/" + host}}}
			},
			Attach:           func(*nats.Msg) fleet.Message { return &fleet.AttachReply{} },
			CreateTracepoint: func(*nats.Msg) fleet.Message { return &fleet.CreateTracepointReply{} },
			ClearTracepoint:  func(*nats.Msg) fleet.Message { return &fleet.ClearTracepointReply{} },
		}, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
	}
	beat := func(host, digest string, every time.Duration) {
		t.Helper()
		if err := c.PutHeartbeat(ctx, &fleet.Heartbeat{Host: host, Updated: time.Now().UTC(), Every: fleet.Duration(every), Digest: digest}); err != nil {
			t.Fatal(err)
		}
	}
	beat("a1", "d1", time.Hour)
	beat("a2", "d1", time.Hour)

	hw, err := c.WatchHosts(ctx, log)
	if err != nil {
		t.Fatal(err)
	}
	defer hw.Stop()
	changes := hw.Subscribe()
	<-hw.Synced()
	beat("b1", "d1", time.Hour) // after the watch began
	testsupport.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := names(hw.List()); got != "a1 a2 b1" {
			return fmt.Errorf("listed %q, want a1 a2 b1", got)
		}
		return nil
	})
	count := func(host string) int {
		mu.Lock()
		defer mu.Unlock()
		return asked[host]
	}
	if n := count("a1") + count("a2") + count("b1"); n != 0 {
		t.Fatalf("listing the hosts asked agents %d times, want none", n)
	}

	onlyA := func(h string) bool { return h[0] == 'a' }
	got, err := hw.Profiles(ctx, onlyA)
	if err != nil {
		t.Fatal(err)
	}
	if names(got) != "a1 a2" || got[0].Profile == nil || got[0].Profile.Processes[0].Exe != "/bin/a1" {
		t.Fatalf("profiles of a*: %+v", got)
	}
	if _, err := hw.Profiles(ctx, onlyA); err != nil {
		t.Fatal(err)
	}
	if count("a1") != 1 || count("a2") != 1 || count("b1") != 0 {
		t.Fatalf("asked a1 %d, a2 %d, b1 %d times; want 1, 1, 0: an unchanged host is answered from the last profile", count("a1"), count("a2"), count("b1"))
	}

	// a2's processes change: only it is asked again.
	drain(changes)
	beat("a2", "d2", time.Hour)
	awaitChange(t, changes)
	testsupport.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if _, err := hw.Profiles(ctx, onlyA); err != nil {
			return err
		}
		if count("a2") != 2 {
			return fmt.Errorf("a2 asked %d times, want 2 after its digest changed", count("a2"))
		}
		return nil
	})
	if count("a1") != 1 {
		t.Fatalf("a1 asked %d times, want 1: its processes did not change", count("a1"))
	}

	// b1 falls silent: its heartbeat grows older than three periods, and
	// the watch says so with no message from anyone.
	drain(changes)
	beat("b1", "d1", 100*time.Millisecond)
	testsupport.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		for _, h := range hw.List() {
			if h.Name == "b1" && !h.Gone {
				return fmt.Errorf("b1 not gone yet")
			}
		}
		return nil
	})
	awaitChange(t, changes)

	// a1 withdraws its heartbeat (its agent stopped): it is no longer listed.
	if err := c.WithdrawHeartbeat(ctx, "a1"); err != nil {
		t.Fatal(err)
	}
	testsupport.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := names(hw.List()); got != "a2 b1" {
			return fmt.Errorf("listed %q, want a2 b1", got)
		}
		return nil
	})
}

func names(hs []fleet.HostEntry) string {
	s := ""
	for i, h := range hs {
		if i > 0 {
			s += " "
		}
		s += h.Name
	}
	return s
}

func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

func awaitChange(t *testing.T, changes <-chan struct{}) {
	t.Helper()
	select {
	case <-changes:
	case <-time.After(10 * time.Second):
		t.Fatal("no change announced within 10s")
	}
}

// TestProfilesFilesAtOnce: which processes run which files is asked of a
// hundred hosts at once, in one round trip rather than one after another,
// and kept per host until its processes change.
func TestProfilesFilesAtOnce(t *testing.T) {
	t.Cleanup(checkNoGoroutineLeak(t))
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	const hosts = 100
	// Each agent's half holds its answer until every host was asked, or
	// 10 s after the first was: asked one after another, the first would
	// wait alone, and the others not at all.
	var mu sync.Mutex
	inFlight, most, asked := 0, 0, 0
	all := make(chan struct{})
	window := sync.OnceValue(func() <-chan time.Time { return time.After(10 * time.Second) })
	for i := range hosts {
		host := fmt.Sprintf("h%03d", i)
		stop, err := c.ServeHost(host, fleet.HostHandlers{
			Profile: func(m *nats.Msg) fleet.Message {
				var req fleet.Request
				fleet.Decode(m.Data, "profile request", &req)
				mu.Lock()
				inFlight++
				asked++
				most = max(most, inFlight)
				if inFlight == hosts {
					close(all)
				}
				mu.Unlock()
				select {
				case <-all:
				case <-window():
				}
				mu.Lock()
				inFlight--
				mu.Unlock()
				p := fleet.Process{Pid: 1, Exe: "/bin/svc", Module: "example.com/svc"}
				if req.Files {
					p.Files = []string{"/src/" + host + ".go"}
				}
				return &fleet.Profile{Host: fleet.HostInfo{Name: host}, Processes: []fleet.Process{p}}
			},
			Attach:           func(*nats.Msg) fleet.Message { return &fleet.AttachReply{} },
			CreateTracepoint: func(*nats.Msg) fleet.Message { return &fleet.CreateTracepointReply{} },
			ClearTracepoint:  func(*nats.Msg) fleet.Message { return &fleet.ClearTracepointReply{} },
		}, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		if err := c.PutHeartbeat(ctx, &fleet.Heartbeat{Host: host, Updated: time.Now().UTC(), Every: fleet.Duration(time.Hour), Digest: "d1"}); err != nil {
			t.Fatal(err)
		}
	}
	hw, err := c.WatchHosts(ctx, log)
	if err != nil {
		t.Fatal(err)
	}
	defer hw.Stop()
	testsupport.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := len(hw.List()); n != hosts {
			return fmt.Errorf("%d hosts listed, want %d", n, hosts)
		}
		return nil
	})
	got, err := hw.ProfilesFiles(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range got {
		if e.Gone || e.Profile == nil || len(e.Profile.Processes) != 1 || len(e.Profile.Processes[0].Files) != 1 || e.Profile.Processes[0].Files[0] != "/src/"+e.Name+".go" {
			t.Fatalf("host %s: %+v, want its process with its file", e.Name, e)
		}
	}
	counts := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return most, asked
	}
	if m, _ := counts(); len(got) != hosts || m != hosts {
		t.Fatalf("%d hosts answered, at most %d asked at once: want all %d, at once", len(got), m, hosts)
	}
	if _, err := hw.ProfilesFiles(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, a := counts(); a != hosts {
		t.Errorf("asked %d times after a second call, want %d: unchanged hosts are answered from their last profile", a, hosts)
	}
}
