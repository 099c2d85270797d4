package main_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/internal/testsupport"
)

// netns is a network namespace joined to this one by a veth pair: the
// namespace's end has nsAddr, this one's hostAddr.
type netns struct {
	name             string
	hostIf, nsIf     string
	hostAddr, nsAddr string
}

// ipCmd runs ip with args and returns its error with its output.
func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// newNetns makes a namespace for the test and removes it when the test ends,
// failed or not. It skips the test where namespaces cannot be made.
func newNetns(t *testing.T) *netns {
	t.Helper()
	return newNetnsN(t, 0)
}

// newNetnsN is newNetns for a test that needs several namespaces (or runs
// beside another test of this process that has one): i, from 0 to 7,
// tells them apart.
func newNetnsN(t *testing.T, i int) *netns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("making a network namespace needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip command (Debian package iproute2; .ci/run installs it)")
	}
	pid := os.Getpid()
	n := &netns{
		name:   fmt.Sprintf("riptrace-cut-%d-%d", pid, i),
		hostIf: fmt.Sprintf("rtc%dh%d", pid, i), nsIf: fmt.Sprintf("rtc%dn%d", pid, i),
		// A /30 of its own per test process and index, so parallel runs
		// do not meet.
		hostAddr: fmt.Sprintf("10.%d.%d.%d", 213+i, pid/64%256, pid%64*4+1),
		nsAddr:   fmt.Sprintf("10.%d.%d.%d", 213+i, pid/64%256, pid%64*4+2),
	}
	// Left over by a run that was killed.
	ipCmd("link", "del", n.hostIf)
	ipCmd("netns", "del", n.name)
	if err := ipCmd("netns", "add", n.name); err != nil {
		if strings.Contains(err.Error(), "Operation not permitted") || strings.Contains(err.Error(), "Permission denied") {
			t.Skipf("making a network namespace needs CAP_NET_ADMIN and CAP_SYS_ADMIN: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ipCmd("link", "del", n.hostIf); err != nil {
			t.Error(err)
		}
		if err := ipCmd("netns", "del", n.name); err != nil {
			t.Error(err)
		}
	})
	for _, args := range [][]string{
		{"link", "add", n.hostIf, "type", "veth", "peer", "name", n.nsIf},
		{"link", "set", n.nsIf, "netns", n.name},
		{"addr", "add", n.hostAddr + "/30", "dev", n.hostIf},
		{"link", "set", n.hostIf, "up"},
		{"netns", "exec", n.name, "ip", "addr", "add", n.nsAddr + "/30", "dev", n.nsIf},
		{"netns", "exec", n.name, "ip", "link", "set", n.nsIf, "up"},
		{"netns", "exec", n.name, "ip", "link", "set", "lo", "up"},
	} {
		if err := ipCmd(args...); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// setLink takes the namespace's end of the link down or up: the namespace
// loses its route to the host, while the host's own address stays reachable
// on the host.
func (n *netns) setLink(t *testing.T, state string) {
	t.Helper()
	if err := ipCmd("netns", "exec", n.name, "ip", "link", "set", n.nsIf, state); err != nil {
		t.Fatal(err)
	}
}

// startIn runs `riptrace args...` in the namespace, like start.
func (n *netns) startIn(t *testing.T, args ...string) *bg {
	t.Helper()
	return startUnder(t, []string{"ip", "netns", "exec", n.name}, args...)
}

// hitLog collects the hits of one tracepoint as they arrive.
type hitLog struct {
	mu   sync.Mutex
	hits []fleet.Hit
}

func (l *hitLog) read(ctx context.Context, r *fleet.HitReader) {
	for {
		h, err := r.Next(ctx)
		if err != nil {
			return
		}
		l.mu.Lock()
		l.hits = append(l.hits, h)
		l.mu.Unlock()
	}
}

// of returns the hits from pid so far.
func (l *hitLog) of(pid int) []fleet.Hit {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []fleet.Hit
	for _, h := range l.hits {
		if h.Pid == pid {
			out = append(out, h)
		}
	}
	return out
}

// awaitHit waits for a hit from pid for which ok is true.
func (l *hitLog) awaitHit(t *testing.T, pid int, what string, ok func(fleet.Hit) bool) fleet.Hit {
	t.Helper()
	var found fleet.Hit
	testsupport.CheckFor(t, stateTimeout, 20*time.Millisecond, func() error {
		hits := l.of(pid)
		for _, h := range hits {
			if ok(h) {
				found = h
				return nil
			}
		}
		return fmt.Errorf("no hit from pid %d %s among its %d hits", pid, what, len(hits))
	})
	return found
}

// cutOffFor is how long TestHostCutOff keeps a host off the network, at
// least.
const cutOffFor = 10 * time.Second

// A host cut off the network: the other host's hits keep flowing, `riptrace
// hosts` shows the cut one gone, and when the link returns it comes back by
// itself: a fresh heartbeat, its hits flowing again, and the hits it took
// while cut off delivered, none missing.
func TestHostCutOff(t *testing.T) {
	t.Parallel()
	n := newNetns(t)
	// Targets first, so that cleanups stop the agents (which detach) before
	// the targets.
	bin := agenttest.BuildTarget(t, loopDir, agenttest.NoOpt)
	cutTarget := startTargetBuild(t, bin, "cut-host")
	otherTarget := startTargetBuild(t, bin, "other-host")

	p := start(t, "server", "--listen", n.hostAddr+":-1", "--data", t.TempDir())
	var url string
	p.await(t, cmdTimeout, "ready line", func(stdout, _ string) bool {
		m := serverReady.FindStringSubmatch(stdout)
		if m != nil {
			url = m[1]
		}
		return m != nil
	})
	cutHost, otherHost := exeName("cut"), exeName("other")
	n.startIn(t, "agent", "--nats", url, "--host", cutHost, "--processes", exeName("cut-host"))
	startAgent(t, url, otherHost, "other-host")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := fleet.Connect(ctx, url, fleet.ClientOptions{Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	spec := &fleet.Spec{
		ID:       "cut-" + strconv.Itoa(os.Getpid()),
		Location: fleet.Location{Path: "loop/main.go", Line: agenttest.MarkerLine(t, loopSource(t), "process")},
		Capture:  fleet.Capture{Args: true},
		Limits:   fleet.Limits{MaxHitsPerSecond: 1000},
	}
	r, err := c.Hits(ctx, fleet.HitOptions{Tracepoints: []string{spec.ID}, Replay: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var hits hitLog
	go hits.read(ctx, r)
	// The same hits through the timeline, as every client reads them.
	tr, err := c.Timeline(ctx, fleet.HitOptions{Tracepoints: []string{spec.ID}, Replay: true}, fleet.TimelineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	var placed placedLog
	go placed.read(ctx, tr)
	if err := c.Declare(ctx, spec); err != nil {
		t.Fatal(err)
	}
	defer c.Remove(context.Background(), spec.ID)
	after := func(at time.Time) func(fleet.Hit) bool {
		return func(h fleet.Hit) bool { return h.ServerTime.After(at) }
	}
	hits.awaitHit(t, cutTarget.Pid, "at all", after(time.Time{}))
	hits.awaitHit(t, otherTarget.Pid, "at all", after(time.Time{}))

	// 1. Cut: the other host is unaffected, the cut one shows gone.
	n.setLink(t, "down")
	cutAt := time.Now()
	hits.awaitHit(t, otherTarget.Pid, "after the cut", after(cutAt.Add(time.Second)))
	var lastSeen time.Time
	testsupport.CheckFor(t, stateTimeout, 100*time.Millisecond, func() error {
		hs, err := listHosts(t, url)
		if err != nil {
			return err
		}
		if _, err := findHost(hs, otherHost); err != nil {
			return fmt.Errorf("the other host: %v", err)
		}
		for _, h := range hs {
			if h.Name == cutHost {
				if !h.Gone {
					return fmt.Errorf("cut host %s still shown live (last seen %v)", cutHost, h.LastSeen)
				}
				lastSeen = h.LastSeen
				return nil
			}
		}
		return fmt.Errorf("cut host %s not listed at all", cutHost)
	})
	goneAfter := time.Since(cutAt)
	if !lastSeen.Before(cutAt.Add(time.Second)) {
		t.Errorf("cut host last seen %v, after the cut at %v", lastSeen, cutAt)
	}
	stillCut := len(hits.of(cutTarget.Pid))
	// The cut host keeps taking hits meanwhile: 2 s more at least, and
	// 10 s cut off in all (issue 13's outage).
	time.Sleep(max(2*time.Second, time.Until(cutAt.Add(cutOffFor))))

	// 2. The link returns: the cut host recovers by itself.
	n.setLink(t, "up")
	upAt := time.Now()
	testsupport.CheckFor(t, stateTimeout, 100*time.Millisecond, func() error {
		hs, err := listHosts(t, url)
		if err != nil {
			return err
		}
		h, err := findHost(hs, cutHost)
		if err != nil {
			return err
		}
		if !h.LastSeen.After(upAt) {
			return fmt.Errorf("cut host %s last seen %v, before the link came up at %v", cutHost, h.LastSeen, upAt)
		}
		return nil
	})
	liveAfter := time.Since(upAt)
	// Hits taken while cut off arrive after the link returns…
	buffered := hits.awaitHit(t, cutTarget.Pid, "taken while cut off", func(h fleet.Hit) bool {
		at := time.Unix(0, h.Time)
		return at.After(cutAt.Add(time.Second)) && at.Before(upAt) && h.ServerTime.After(upAt)
	})
	// …and new ones flow again.
	hits.awaitHit(t, cutTarget.Pid, "taken after the link returned", func(h fleet.Hit) bool {
		return time.Unix(0, h.Time).After(upAt)
	})
	flowingAt := time.Now()
	flowingAfter := flowingAt.Sub(upAt)
	if len(hits.of(cutTarget.Pid)) <= stillCut {
		t.Errorf("no hit from the cut host after the link returned")
	}

	// Every iteration of the cut host's target is there once, in order, or
	// counted as dropped by the hit after the gap.
	all := hits.of(cutTarget.Pid)
	prev, missing, during := -1, 0, 0
	for i, h := range all {
		v := varNamed(h.Args, "n")
		if v == nil {
			t.Fatalf("hit #%d has no argument n: %+v", h.Seq, h.Args)
		}
		cur, err := strconv.Atoi(v.Value)
		if err != nil {
			t.Fatalf("hit #%d: n = %q: %v", h.Seq, v.Value, err)
		}
		if i > 0 {
			if cur <= prev {
				t.Fatalf("hit #%d has n %d after %d: out of order or twice", h.Seq, cur, prev)
			}
			if gap := cur - prev - 1; uint64(gap) != h.Dropped {
				t.Errorf("hit #%d (n %d) says %d dropped before it, but %d iterations are missing", h.Seq, cur, h.Dropped, gap)
			}
			missing += cur - prev - 1
		}
		if at := time.Unix(0, h.Time); at.After(cutAt) && at.Before(upAt) {
			during++
		}
		prev = cur
	}
	if missing != 0 {
		t.Errorf("%d iterations of the cut host's target missing from the stream", missing)
	}
	t.Logf("cut for %v: shown gone %v after the cut; after the link returned, a fresh heartbeat in %v, hits flowing in %v; %d hits taken while cut off delivered (first at #%d), %d hits from the cut host in all, %d missing",
		upAt.Sub(cutAt).Round(time.Millisecond), goneAfter.Round(time.Millisecond), liveAfter.Round(time.Millisecond), flowingAfter.Round(time.Millisecond), during, buffered.Seq, len(all), missing)

	// The timeline: the hits taken while cut off came after the others
	// had moved on, and say so; a hit is marked late only if it came
	// later than its agent promised, and hits taken once the cut host's
	// hits flow again (its buffer delivered) are in place.
	agenttest.CheckFor(t, stateTimeout, 100*time.Millisecond, func() error {
		if n, want := placed.count(cutTarget.Pid), len(all); n < want {
			return fmt.Errorf("%d hits of the cut host in the timeline, want the %d of the stream", n, want)
		}
		for _, pid := range []int{cutTarget.Pid, otherTarget.Pid} {
			if !slices.ContainsFunc(placed.all(), func(p fleet.Placed) bool {
				return p.Pid == pid && p.CoordinatedTime.After(flowingAt.Add(fleet.DefaultMaxHold+time.Second))
			}) {
				return fmt.Errorf("no hit of pid %d in the timeline taken %v after the hits flowed again", pid, fleet.DefaultMaxHold+time.Second)
			}
		}
		return nil
	})
	late, inPlace := 0, 0
	for _, p := range placed.all() {
		waited := p.ServerTime.Sub(p.CoordinatedTime)
		var bound time.Duration
		if p.Bound != nil {
			bound = time.Duration(*p.Bound)
		}
		switch {
		case p.Pid == cutTarget.Pid && p.CoordinatedTime.After(cutAt.Add(time.Second)) && p.CoordinatedTime.Before(upAt) && waited > fleet.DefaultMaxHold:
			if !p.Late {
				t.Errorf("hit #%d of the cut host, taken while cut off, arrived %v after it ran, when the others had moved on, without the late mark", p.Seq, waited)
			}
			late++
		case p.Late && waited < agent.DefaultTimelineLag-time.Millisecond-bound:
			// Late only if the agent broke its promise, which no
			// agent makes shorter than the default: on a loaded
			// machine a hit after the return may take longer. The
			// hit's own offset may overstate its wait by its bound.
			t.Errorf("hit #%d of pid %d arrived %v after it ran, within its agent's promise, yet is marked late", p.Seq, p.Pid, waited)
		case !p.Late && p.CoordinatedTime.After(flowingAt.Add(fleet.DefaultMaxHold)):
			inPlace++
		}
	}
	if late == 0 || inPlace == 0 {
		t.Errorf("the timeline has %d late hits of the cut host and %d hits in place after its return; want some of each", late, inPlace)
	}
	t.Logf("timeline: %d hits taken while cut off marked late, %d after the return in place", late, inPlace)
	awaitProgress(t, cutTarget, otherTarget)
}

// placedLog collects the hits of a timeline reader.
type placedLog struct {
	mu   sync.Mutex
	hits []fleet.Placed
}

func (l *placedLog) read(ctx context.Context, r *fleet.TimelineReader) {
	for {
		p, err := r.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			continue
		}
		l.mu.Lock()
		l.hits = append(l.hits, p)
		l.mu.Unlock()
	}
}

func (l *placedLog) all() []fleet.Placed {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.hits)
}

func (l *placedLog) count(pid int) int {
	n := 0
	for _, p := range l.all() {
		if p.Pid == pid {
			n++
		}
	}
	return n
}
