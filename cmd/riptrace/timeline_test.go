package main_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/ebpf"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/internal/testsupport"
)

// TestTimelineSkewedClocks runs the demo services under three agents whose
// clocks are 40 ms behind, right, and 35 ms ahead of the server's, sends
// requests through them, and reads `riptrace timeline`: each request's
// hits must come out in the order they ran (orders prices, payments
// charges, the gateway answers), or say that their order is uncertain or
// that they came late; never inverted silently. Uncorrected, the clocks
// alone would put every gateway hit before the charge it waited for.
// RIPTRACE_TIMELINE_REQUESTS sets the number of requests (default 150).
func TestTimelineSkewedClocks(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three agents over the demo services")
	}
	t.Parallel()
	skewedClocks(t, skewRun{prefix: "tl-"})
}

// TestTimelineSkewedClocksNetns is TestTimelineSkewedClocks with each agent
// in a network namespace of its own, on a link of its own to the server's
// host, shaped to a different rate so that bursts of hits queue: what
// reaches the server comes at different distances, with jitter. (tc's
// netem would delay and jitter the links directly; where the kernel has no
// sch_netem, as on this project's CI machine, token buckets do.)
func TestTimelineSkewedClocksNetns(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three agents over the demo services")
	}
	t.Parallel()
	skewedClocks(t, skewRun{prefix: "tlns-", namespaces: true})
}

// TestTimelineMixedBackends is TestTimelineSkewedClocks with the middle
// of each request traced by the Delve backend (payments: the process
// stops at the line) and its two ends by the eBPF backend (orders and the
// gateway: a uprobe, decoded in bursts of up to 100 ms): hits of both
// kinds in one timeline, each request's in the order it ran or marked.
func TestTimelineMixedBackends(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three agents over the demo services")
	}
	if err := ebpf.Available(); err != nil {
		t.Skipf("eBPF is not available here: %v", err)
	}
	t.Parallel()
	skewedClocks(t, skewRun{prefix: "tlmix-", backends: [3]string{agent.BackendEBPF, agent.BackendDelve, agent.BackendEBPF}})
}

// skewRun is what sets a run of skewedClocks apart.
type skewRun struct {
	// prefix names the run's executables and hosts: agents select
	// processes by name, and the runs go on side by side.
	prefix string
	// namespaces puts each agent in a network namespace of its own.
	namespaces bool
	// backends, if set, serve the tracepoints of orders, payments and the
	// gateway (in that order, each request's).
	backends [3]string
}

func skewedClocks(t *testing.T, sr skewRun) {
	namespaces := sr.namespaces
	requests := 150
	if v := os.Getenv("RIPTRACE_TIMELINE_REQUESTS"); v != "" {
		requests, _ = strconv.Atoi(v)
	}
	var nss []*netns
	if namespaces {
		for i := range 3 {
			nss = append(nss, newNetnsN(t, 1+i))
		}
	}
	var url string
	if namespaces {
		p := start(t, "server", "--listen", "0.0.0.0:-1", "--data", t.TempDir())
		p.await(t, cmdTimeout, "ready line", func(stdout, _ string) bool {
			m := serverReady.FindStringSubmatch(stdout)
			if m != nil {
				url = m[1]
			}
			return m != nil
		})
	} else {
		url = startServer(t)
	}
	port := url[strings.LastIndex(url, ":")+1:]
	if namespaces {
		url = "nats://127.0.0.1:" + port
	}
	demoDir := filepath.Join("..", "..", "demo")
	pre := sr.prefix
	payments := startTargetBuild(t, agenttest.BuildTarget(t, filepath.Join(demoDir, "payments")), pre+"payments")
	orders := startTargetBuild(t, agenttest.BuildTarget(t, filepath.Join(demoDir, "orders")), pre+"orders", "-payments", "http://"+payments.Addr)
	gateway := startTargetBuild(t, agenttest.BuildTarget(t, filepath.Join(demoDir, "gateway")), pre+"gateway", "-orders", "http://"+orders.Addr)

	type host struct {
		name, exe, skew string
		offset          time.Duration // what the agent should measure
	}
	hosts := []host{
		{pre + "pay", pre + "payments", "-40ms", 40 * time.Millisecond},
		{pre + "ord", pre + "orders", "0s", 0},
		{pre + "gw", pre + "gateway", "35ms", -35 * time.Millisecond},
	}
	for i, h := range hosts {
		wrap, agentURL := []string{"env", "RIPTRACE_TEST_CLOCK_SKEW=" + h.skew}, url
		if namespaces {
			n := nss[i]
			agentURL = shape(t, n, i, port)
			wrap = append([]string{"ip", "netns", "exec", n.name}, wrap...)
		}
		args := []string{"agent", "--nats", agentURL, "--host", h.name, "--processes", exeName(h.exe)}
		if slices.Contains(sr.backends[:], agent.BackendDelve) {
			// No stop budget: on a loaded machine, Delve's stops for
			// requests back to back exceed the default 10% of a second,
			// and the agent drops hits to spare the process (64-175 of
			// 1000 at load 15-27); this test is about their order.
			args = append(args, "--stop-budget", "0")
		}
		startUnder(t, wrap, args...)
	}
	// Each agent lists its service and measures its clock's offset to
	// the server's.
	agenttest.CheckFor(t, stateTimeout, 100*time.Millisecond, func() error {
		list, err := listHosts(t, url)
		if err != nil {
			return err
		}
		for _, h := range hosts {
			e, err := findHost(list, h.name)
			if err != nil {
				return err
			}
			if len(e.Profile.Processes) == 0 {
				return fmt.Errorf("host %s lists no process yet", h.name)
			}
			c := e.Profile.Host.Clock
			if c == nil {
				return fmt.Errorf("host %s: no clock: %s", h.name, e.Profile.Host.ClockError)
			}
			// The bound is the exchange's; the skew is applied to a
			// clock read a little before or after, hence the slack.
			if d := time.Duration(c.Offset) - h.offset; d.Abs() > time.Duration(c.Bound)+2*time.Millisecond {
				return fmt.Errorf("host %s: clock %s, want an offset of %v", h.name, c, h.offset)
			}
		}
		return nil
	})
	// And riptrace hosts says so: "+40.012ms ±0.180ms to the server's".
	agenttest.CheckFor(t, stateTimeout, 100*time.Millisecond, func() error {
		r := run(t, cmdTimeout, "hosts", "--nats", url)
		for _, h := range hosts {
			want := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(h.name) + `\s+live\s.*\s([-+][0-9.]+)ms ±[0-9.]+ms to the server's$`)
			m := want.FindStringSubmatch(r.stdout)
			if m == nil {
				return fmt.Errorf("riptrace hosts shows no clock for %s:\n%s", h.name, r.stdout)
			}
			if off, _ := strconv.ParseFloat(m[1], 64); math.Abs(off-h.offset.Seconds()*1e3) > 10 {
				return fmt.Errorf("riptrace hosts shows a clock of %sms for %s, want about %v:\n%s", m[1], h.name, h.offset, r.stdout)
			}
		}
		return nil
	})

	// From the stream's start, and on live: the replay sameOrder compares
	// it with then starts there too, whenever this one subscribed.
	tlArgs := []string{"timeline", "--nats", url, "--json", "--group", "o.ID", "--group", "req.OrderID", "--since", "1h"}
	tl := start(t, append(tlArgs, "--follow")...)
	var traces []*bg // riptrace trace --json of each tracepoint
	for i, tp := range []struct{ file, marker, group string }{
		{"orders/main.go", "price", "o.ID"},
		{"payments/main.go", "charge", "req.OrderID"},
		{"gateway/main.go", "checkout", "o.ID"},
	} {
		src := filepath.Join(demoDir, tp.file)
		line := agenttest.MarkerLine(t, src, tp.marker)
		// --wait: the two other services refuse the line, and on a loaded
		// machine they may say so before the one that has it answers.
		args := []string{"trace", "--nats", url, "--json", "--rate", "0", "--wait", "--group", tp.group}
		installed := ": installed"
		if b := sr.backends[i]; b != "" {
			// The status says which backend serves it: "installed in
			// main.charge at …:41 (delve)".
			args, installed = append(args, "--backend", b), "("+b
		}
		tr := start(t, append(args, fmt.Sprintf("%s:%d", src, line))...)
		tr.await(t, stateTimeout, "the tracepoint installed", func(_, stderr string) bool {
			return strings.Contains(stderr, ": installed") && strings.Contains(stderr, installed)
		})
		traces = append(traces, tr)
	}

	client := &http.Client{Timeout: 10 * time.Second}
	for i := range requests {
		body := fmt.Sprintf(`{"customer":%q,"items":[{"sku":"pen","qty":%d}]}`, []string{"alice", "bob", "mallory"}[i%3], i%5+1)
		resp, err := client.Post("http://"+gateway.Addr+"/checkout", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp.Body.Close()
	}
	want := 3 * requests
	var placed []fleet.Placed
	agenttest.CheckFor(t, 2*stateTimeout, 100*time.Millisecond, func() error {
		placed = decodePlaced(t, tl.Output())
		if len(placed) >= want {
			return nil
		}
		per := make(map[string]int)
		for _, p := range placed {
			per[p.Host]++
		}
		return fmt.Errorf("%d of %d hits in the timeline, by host %v", len(placed), want, per)
	})

	// Per request, the place of each of its three hits in the timeline.
	type req struct{ price, charge, checkout int }
	byOrder := make(map[string]*req)
	late, uncertain := 0, 0
	for i, p := range placed {
		if p.Group == "" {
			t.Fatalf("hit %d (%s) has no group", i, p.Function)
		}
		r := byOrder[p.Group]
		if r == nil {
			r = &req{-1, -1, -1}
			byOrder[p.Group] = r
		}
		switch p.Function {
		case "main.priceOrder":
			r.price = i
		case "main.charge":
			r.charge = i
		case "main.checkout":
			r.checkout = i
		}
		if p.Late {
			if late < 5 {
				t.Logf("late: %s on %s, arrived %v after it ran; clock %s", p.Function, p.Host, p.ServerTime.Sub(p.CoordinatedTime), p.Clock)
			}
			late++
			// Late only if it came later than its agent promised.
			if waited := p.ServerTime.Sub(p.CoordinatedTime); waited < agent.DefaultTimelineLag-time.Millisecond {
				t.Errorf("hit %d (%s on %s) arrived %v after it ran, within its agent's promise, yet is marked late", i, p.Function, p.Host, waited)
			}
		}
		if p.Uncertain {
			uncertain++
		}
		if p.Clock == nil || p.Offset == nil {
			t.Errorf("hit %d (%s on %s) has no clock: %s", i, p.Function, p.Host, p.Note)
		}
	}
	if len(byOrder) != requests {
		t.Fatalf("%d requests in the timeline, want %d", len(byOrder), requests)
	}
	inOrder, marked := 0, 0
	for id, r := range byOrder {
		ok := true
		for _, pair := range [][2]int{{r.price, r.charge}, {r.charge, r.checkout}} {
			a, b := pair[0], pair[1]
			if a < 0 || b < 0 {
				t.Fatalf("request %s lacks a hit: %+v", id, r)
			}
			// The coordinated times respect causality within the bounds.
			pa, pb := placed[a], placed[b]
			if slack := time.Duration(*pa.Bound + *pb.Bound); pb.CoordinatedTime.Add(slack).Before(pa.CoordinatedTime) {
				t.Errorf("request %s: %s at %v ran after %s at %v, but its coordinated time is earlier by more than the bounds (%v)", id, pb.Function, pb.CoordinatedTime, pa.Function, pa.CoordinatedTime, slack)
			}
			if a > b {
				ok = false
				// Inverted: the later one says so.
				if !placed[a].Uncertain && !placed[a].Late && !placed[b].Late {
					t.Errorf("request %s: %s (order %d) placed after %s (order %d) that it ran before, with no mark", id, pa.Function, pa.Order, pb.Function, pb.Order)
				}
			}
		}
		if ok {
			inOrder++
		} else {
			marked++
		}
	}
	t.Logf("%d requests: %d with their hits in order, %d inverted and marked; %d hits late, %d uncertain of %d", requests, inOrder, marked, late, uncertain, len(placed))
	sameOrder(t, url, tlArgs, placed, traces, requests)
	filtered(t, tlArgs, placed, hosts[2].name, exeName(hosts[1].exe), traces[1])
}

// sameOrder checks that the clients of one stream show the timeline
// placed, read live by riptrace timeline from the stream's start, in the
// same order: riptrace timeline replaying the stream from its start, hit
// for hit with the same marks (the timeline is decided by the stream
// alone); and each riptrace trace --json
// of traces (requests hits each), which reads its tracepoint's hits only,
// hence may hold a hit for a different time and find a different one
// late, but shows the hits that neither found late in the timeline's
// order.
func sameOrder(t *testing.T, url string, tlArgs []string, placed []fleet.Placed, traces []*bg, requests int) {
	t.Helper()
	replay := start(t, tlArgs...)
	if code := replay.exitCode(t, 2*stateTimeout); code != 0 {
		t.Fatalf("%s exited with %d", replay.name, code)
	}
	// The replay prints each request as a block: compare hit by hit.
	replayed := make(map[string]fleet.Placed) // by hit number
	for _, p := range decodePlaced(t, replay.Output()) {
		replayed[p.Number()] = p
	}
	if len(replayed) != len(placed) {
		t.Errorf("the replay placed %d hits, the live timeline %d", len(replayed), len(placed))
	}
	differ := 0
	for _, a := range placed {
		b, ok := replayed[a.Number()]
		if !ok || a.Order != b.Order || a.Late != b.Late || a.Uncertain != b.Uncertain || a.UncertainWith != b.UncertainWith || a.UncertainWithPart != b.UncertainWithPart || a.OrderedByCall != b.OrderedByCall || a.OrderedByCallPart != b.OrderedByCallPart || !a.CoordinatedTime.Equal(b.CoordinatedTime) {
			if differ++; differ <= 5 {
				t.Errorf("hit #%s: live order %d late=%v uncertain=%v(#%d) at %v; replayed order %d late=%v uncertain=%v(#%d) at %v", a.Number(),
					a.Order, a.Late, a.Uncertain, a.UncertainWith, a.CoordinatedTime, b.Order, b.Late, b.Uncertain, b.UncertainWith, b.CoordinatedTime)
			}
		}
	}
	if differ > 0 {
		t.Errorf("%d of %d hits differ between the live timeline and its replay", differ, len(placed))
	}

	place := make(map[string]fleet.Placed) // by hit number
	for _, p := range placed {
		place[p.Number()] = p
	}
	for _, tr := range traces {
		var hits []fleet.Placed
		tr.await(t, stateTimeout, fmt.Sprintf("%d hits", requests), func(stdout, _ string) bool {
			hits = decodePlaced(t, stdout)
			return len(hits) >= requests
		})
		var last fleet.Placed
		for _, h := range hits {
			p, ok := place[h.Number()]
			switch {
			case !ok:
				t.Errorf("%s: hit #%s is not in the timeline", tr.name, h.Number())
				continue
			case h.Late || p.Late:
				continue
			case last.Seq != 0 && p.Order < last.Order:
				t.Errorf("%s: hit #%s after #%s, which the timeline puts after it (order %d, %d)", tr.name, h.Number(), last.Number(), p.Order, last.Order)
			}
			last = p
		}
	}
}

// filtered checks riptrace timeline's filters and blocks over a replay of
// the stream whose timeline, read live, is placed: --hosts host and
// --processes exe each print the hits they select and only those, each
// at its place in the whole timeline; --tracepoint (that of tr) reads
// that tracepoint's hits only, numbered and marked late by a timeline of
// their own, in the whole timeline's order but for the late ones (as
// riptrace trace, see sameOrder); and without --json each request is one
// block, its hits in timeline order.
func filtered(t *testing.T, tlArgs []string, placed []fleet.Placed, host, exe string, tr *bg) {
	t.Helper()
	m := regexp.MustCompile(` as (trace-[0-9a-f]+) `).FindStringSubmatch(tr.Stderr())
	if m == nil {
		t.Fatalf("%s does not name its tracepoint:\n%s", tr.name, tr.Stderr())
	}
	tp := m[1]
	place := make(map[string]fleet.Placed) // by hit number
	for _, p := range placed {
		place[p.Number()] = p
	}
	for _, f := range []struct {
		flag, value string
		keep        func(*fleet.Placed) bool
		own         bool // a timeline of its own
	}{
		{"--hosts", host, func(p *fleet.Placed) bool { return p.Host == host }, false},
		{"--processes", exe, func(p *fleet.Placed) bool { return p.Process.Exe == exe }, false},
		{"--tracepoint", tp, func(p *fleet.Placed) bool { return p.Tracepoint == tp }, true},
	} {
		want := 0
		for _, p := range placed {
			if f.keep(&p) {
				want++
			}
		}
		r := run(t, 2*stateTimeout, append(tlArgs, f.flag, f.value)...)
		got := decodePlaced(t, r.stdout)
		if r.code != 0 || len(got) != want || want == 0 {
			t.Errorf("riptrace timeline %s %s: exit status %d, %d hits, want %d:\n%s", f.flag, f.value, r.code, len(got), want, r.stderr)
			continue
		}
		var last fleet.Placed
		for _, p := range got {
			whole := place[p.Number()]
			switch {
			case !f.keep(&p):
				t.Errorf("riptrace timeline %s %s printed hit #%s of %s on %s", f.flag, f.value, p.Number(), p.Tracepoint, p.Host)
			case !f.own && p.Order != whole.Order:
				t.Errorf("riptrace timeline %s %s printed hit #%s at order %d; in the whole timeline, order %d", f.flag, f.value, p.Number(), p.Order, whole.Order)
			case f.own && !p.Late && !whole.Late:
				if last.Seq != 0 && whole.Order < last.Order {
					t.Errorf("riptrace timeline %s %s printed hit #%s after #%s, which the whole timeline puts after it", f.flag, f.value, p.Number(), last.Number())
				}
				last = whole
			}
		}
	}

	// The blocks: "── request ID ──", then its hits, "#NUMBER …".
	text := slices.DeleteFunc(slices.Clone(tlArgs), func(a string) bool { return a == "--json" })
	r := run(t, 2*stateTimeout, text...)
	inGroup := make(map[string][]string)
	for _, p := range placed { // in timeline order
		inGroup[p.Group] = append(inGroup[p.Group], p.Number())
	}
	blocks := make(map[string][]string)
	var group string
	for line := range strings.Lines(r.stdout) {
		if g, ok := strings.CutPrefix(line, "── request "); ok {
			group = strings.TrimSuffix(strings.TrimSpace(g), " ──")
			if _, dup := blocks[group]; dup {
				t.Errorf("request %s is printed in two blocks", group)
			}
			blocks[group] = []string{}
			continue
		}
		if rest, ok := strings.CutPrefix(line, "#"); ok {
			number := strings.Fields(rest)[0]
			if _, err := strconv.ParseFloat(number, 64); err != nil || group == "" {
				t.Fatalf("riptrace timeline: a hit out of a block: %q", line)
			}
			blocks[group] = append(blocks[group], number)
		}
	}
	if len(blocks) != len(inGroup) {
		t.Errorf("riptrace timeline printed %d request blocks, want %d", len(blocks), len(inGroup))
	}
	for g, seqs := range inGroup {
		if !slices.Equal(blocks[g], seqs) {
			t.Errorf("request %s: block %v, want its hits in timeline order %v", g, blocks[g], seqs)
		}
	}
}

// shape delays and jitters both ends of n's link, differently for each i,
// and returns the URL by which an agent in n reaches the server listening
// on port. With netem where the kernel has it. Where it has not (this
// project's CI kernel is built without sch_netem, and without the fq
// qdisc that would honour departure times a BPF program sets), a relay on
// the host's end of the link does it: it delays what each side sends by
// the link's delay and jitter, in order, as TCP delivers what netem
// jittered; and a token bucket on the link makes bursts of hits queue.
func shape(t *testing.T, n *netns, i int, port string) string {
	t.Helper()
	delay, jitter := []time.Duration{2, 5, 9}[i]*time.Millisecond, []time.Duration{1, 3, 4}[i]*time.Millisecond
	rate := []string{"24mbit", "48mbit", "96mbit"}[i]
	relay := false
	for _, dev := range [][]string{{"ip", "netns", "exec", n.name, "tc"}, {"tc"}} {
		ifc := n.nsIf
		if len(dev) == 1 {
			ifc = n.hostIf
		}
		netem := append(slices.Clone(dev), "qdisc", "add", "dev", ifc, "root", "netem", "delay", delay.String(), jitter.String())
		out, err := exec.Command(netem[0], netem[1:]...).CombinedOutput()
		if err == nil {
			continue
		}
		t.Logf("%s: %v: %s; relaying the link with a delay of %v ± %v, through a token bucket of %s", strings.Join(netem, " "), err, bytes.TrimSpace(out), delay, jitter, rate)
		tbf := append(slices.Clone(dev), "qdisc", "add", "dev", ifc, "root", "tbf", "rate", rate, "burst", "8kb", "latency", "200ms")
		if out, err := exec.Command(tbf[0], tbf[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(tbf, " "), err, bytes.TrimSpace(out))
		}
		relay = true
	}
	if relay {
		return "nats://" + delayRelay(t, n.hostAddr+":0", "127.0.0.1:"+port, delay, jitter, int64(i))
	}
	return "nats://" + n.hostAddr + ":" + port
}

// delayRelay listens on addr and relays each connection to target,
// delivering every read of either side delay ± jitter (uniform) after it
// was read, and never before the read before it: a link with netem's
// delay and jitter, under TCP. It returns the address it listens on.
func delayRelay(t *testing.T, addr, target string, delay, jitter time.Duration, seed int64) string {
	t.Helper()
	var mu sync.Mutex // guards rnd, shared by the pumps
	rnd := rand.New(rand.NewPCG(uint64(seed), 13))
	lag := func() time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return delay - jitter + time.Duration(rnd.Int64N(int64(2*jitter)+1))
	}
	// pump copies from src to dst, each read delivered after its lag.
	pump := func(dst, src net.Conn) {
		type chunk struct {
			b   []byte
			due time.Time
		}
		ch := make(chan chunk, 1024)
		go func() {
			defer close(ch)
			var last time.Time
			for {
				b := make([]byte, 32<<10)
				n, err := src.Read(b)
				if n > 0 {
					due := time.Now().Add(lag())
					if due.Before(last) {
						due = last
					}
					last = due
					ch <- chunk{b[:n], due}
				}
				if err != nil {
					return
				}
			}
		}()
		for c := range ch {
			time.Sleep(time.Until(c.due))
			if _, err := dst.Write(c.b); err != nil {
				break
			}
		}
		// Either side gone: close both, which ends the reader above.
		dst.Close()
		src.Close()
		for range ch {
		}
	}
	return testsupport.Relay(t, addr, target, pump, pump)
}

// TestTimelineStuckAgent: an agent that stops talking (SIGSTOP: its
// watermark never advances, and it says nothing) holds the others back by
// fleet.DefaultMaxHold at most, and the timeline names it; once it goes
// on, the hits it took meanwhile come out marked late where the timeline
// had passed them, never silently out of place. Its service runs on
// throughout.
func TestTimelineStuckAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two agents")
	}
	t.Parallel()
	url := startServer(t)
	bin := agenttest.BuildTarget(t, loopDir, agenttest.NoOpt)
	stuckTarget := startTargetBuild(t, bin, "stuck-host")
	liveTarget := startTargetBuild(t, bin, "live-host")
	stuckHost, liveHost := exeName("stuck"), exeName("live")
	stuck := startAgent(t, url, stuckHost, "stuck-host")
	startAgent(t, url, liveHost, "live-host")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := fleet.Connect(ctx, url, fleet.ClientOptions{Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	spec := &fleet.Spec{
		ID:       "stuck-" + strconv.Itoa(os.Getpid()),
		Location: fleet.Location{Path: "loop/main.go", Line: agenttest.MarkerLine(t, loopSource(t), "process")},
		Capture:  fleet.Capture{Args: true},
		Limits:   fleet.Limits{MaxHitsPerSecond: 200},
	}
	tr, err := c.Timeline(ctx, fleet.HitOptions{Tracepoints: []string{spec.ID}, Replay: true}, fleet.TimelineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	var mu sync.Mutex
	var notices []string
	tr.Notice = func(s string) {
		mu.Lock()
		notices = append(notices, s)
		mu.Unlock()
	}
	var placed placedLog
	go placed.read(ctx, tr)
	if err := c.Declare(ctx, spec); err != nil {
		t.Fatal(err)
	}
	defer c.Remove(context.Background(), spec.ID)
	placedAfter := func(pid int, at time.Time) error {
		for _, p := range placed.all() {
			if p.Pid == pid && p.CoordinatedTime.After(at) {
				return nil
			}
		}
		return fmt.Errorf("no hit of pid %d placed after %v yet", pid, at.Format("15:04:05.000"))
	}
	agenttest.CheckFor(t, stateTimeout, 50*time.Millisecond, func() error {
		if err := placedAfter(stuckTarget.Pid, time.Time{}); err != nil {
			return err
		}
		return placedAfter(liveTarget.Pid, time.Time{})
	})

	stuck.signal(t, syscall.SIGSTOP)
	resumed := false
	defer func() {
		if !resumed {
			stuck.signal(t, syscall.SIGCONT)
		}
	}()
	stoppedAt := time.Now()
	// The live host's hits still come, held back by the stuck one's
	// promise at most, and the timeline says who holds it back.
	agenttest.CheckFor(t, stateTimeout, 50*time.Millisecond, func() error {
		if err := placedAfter(liveTarget.Pid, stoppedAt.Add(fleet.DefaultMaxHold+time.Second)); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for _, n := range notices {
			if strings.Contains(n, "host "+stuckHost+": no word from its agent") {
				return nil
			}
		}
		return fmt.Errorf("no notice names host %s; notices: %q", stuckHost, notices)
	})
	stuck.signal(t, syscall.SIGCONT)
	resumed = true
	contAt := time.Now()
	agenttest.CheckFor(t, stateTimeout, 50*time.Millisecond, func() error {
		return placedAfter(stuckTarget.Pid, contAt.Add(time.Second))
	})

	// In timeline order, a hit of the stuck host that ran before the one
	// shown before it says it is late.
	var last fleet.Placed
	late := 0
	for _, p := range placed.all() {
		if p.Pid != stuckTarget.Pid {
			continue
		}
		if p.Late {
			late++
		}
		if last.Order != 0 && p.CoordinatedTime.Before(last.CoordinatedTime) && !p.Late {
			t.Errorf("hit #%d of the stuck host (order %d) ran before #%d (order %d) shown before it, with no mark", p.Seq, p.Order, last.Seq, last.Order)
		}
		last = p
	}
	t.Logf("stuck host: %d of %d hits late after %v stopped", late, placed.count(stuckTarget.Pid), contAt.Sub(stoppedAt).Round(time.Millisecond))
	awaitProgress(t, stuckTarget, liveTarget)
}
