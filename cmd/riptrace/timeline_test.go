package main_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
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
	requests := 150
	if v := os.Getenv("RIPTRACE_TIMELINE_REQUESTS"); v != "" {
		requests, _ = strconv.Atoi(v)
	}
	url := startServer(t)
	demoDir := filepath.Join("..", "..", "demo")
	payments := startTargetBuild(t, agenttest.BuildTarget(t, filepath.Join(demoDir, "payments")), "tl-payments")
	orders := startTargetBuild(t, agenttest.BuildTarget(t, filepath.Join(demoDir, "orders")), "tl-orders", "-payments", "http://"+payments.Addr)
	gateway := startTargetBuild(t, agenttest.BuildTarget(t, filepath.Join(demoDir, "gateway")), "tl-gateway", "-orders", "http://"+orders.Addr)

	type host struct {
		name, exe, skew string
		offset          time.Duration // what the agent should measure
	}
	hosts := []host{
		{"tl-pay", "tl-payments", "-40ms", 40 * time.Millisecond},
		{"tl-ord", "tl-orders", "0s", 0},
		{"tl-gw", "tl-gateway", "35ms", -35 * time.Millisecond},
	}
	for _, h := range hosts {
		startUnder(t, []string{"env", "RIPTRACE_TEST_CLOCK_SKEW=" + h.skew}, "agent", "--nats", url, "--host", h.name, "--processes", exeName(h.exe))
	}
	// Each agent measures its clock's offset to the server's.
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

	tl := start(t, "timeline", "--nats", url, "--json", "--group", "o.ID", "--group", "req.OrderID")
	for _, tp := range []struct{ file, marker, group string }{
		{"orders/main.go", "price", "o.ID"},
		{"payments/main.go", "charge", "req.OrderID"},
		{"gateway/main.go", "checkout", "o.ID"},
	} {
		src := filepath.Join(demoDir, tp.file)
		line := agenttest.MarkerLine(t, src, tp.marker)
		tr := start(t, "trace", "--nats", url, "--json", "--rate", "0", "--group", tp.group, fmt.Sprintf("%s:%d", src, line))
		tr.await(t, stateTimeout, "the tracepoint installed", func(_, stderr string) bool {
			return strings.Contains(stderr, ": installed")
		})
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
	tl.await(t, 2*stateTimeout, fmt.Sprintf("%d hits in the timeline", want), func(stdout, _ string) bool {
		placed = decodePlaced(t, stdout)
		return len(placed) >= want
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
}
