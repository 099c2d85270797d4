package scenario_test

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/scenario"
)

// hits makes n requests' worth of the demo's hits as the Delve backend
// renders them: price (o), charge (req), checkout (o), 1ms apart, of one
// host whose clock is known to within a microsecond, in the timeline's
// order.
func hits(n int) []fleet.Placed { return scenario.Order(rawHits(n, 1000)) }

func rawHits(n int, bound int64) []fleet.Hit {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	var hs []fleet.Hit
	for i := range n {
		id := fmt.Sprintf("%q", fmt.Sprintf("ord-%04d", i))
		order := fleet.Variable{Name: "o", Type: "*main.Order", Value: "*main.Order {...}", Children: []fleet.Variable{{
			Name: "", Type: "main.Order", Value: "main.Order {...}", Children: []fleet.Variable{
				{Name: "ID", Type: "string", Value: id},
				{Name: "Total", Type: "float64", Value: "25"},
			}}}}
		req := fleet.Variable{Name: "req", Type: "*main.ChargeRequest", Value: "*main.ChargeRequest {...}", Children: []fleet.Variable{{
			Name: "", Type: "main.ChargeRequest", Value: "main.ChargeRequest {...}", Children: []fleet.Variable{
				{Name: "OrderID", Type: "string", Value: id},
				{Name: "Amount", Type: "float64", Value: fmt.Sprint(10 + i%100)},
				{Name: "Currency", Type: "string", Value: `"EUR"`},
			}}}}
		base := t0 + int64(i)*int64(10*time.Millisecond)
		hs = append(hs,
			fleet.Hit{Tracepoint: "price", Host: "h", Pid: 2, Time: base, Args: []fleet.Variable{order}},
			fleet.Hit{Tracepoint: "charge", Host: "h", Pid: 3, Time: base + int64(time.Millisecond), Args: []fleet.Variable{req},
				Locals: []fleet.Variable{{Name: "approved", Type: "bool", Value: fmt.Sprint(i%10 != 0)}}},
			fleet.Hit{Tracepoint: "checkout", Host: "h", Pid: 1, Time: base + int64(2*time.Millisecond), Locals: []fleet.Variable{order, {Name: "err", Type: "error", Value: "nil"}}},
		)
	}
	for i := range hs {
		hs[i].Seq = uint64(i + 1)
		hs[i].ServerTime = time.Unix(0, hs[i].Time+int64(time.Millisecond))
		hs[i].Clock = &fleet.ClockReading{Bound: bound}
	}
	return hs
}

var by = map[string]string{"price": "o.ID", "charge": "req.OrderID", "checkout": "o.ID"}

func TestEvaluate(t *testing.T) {
	hs := hits(20)
	res := scenario.Evaluate(hs, []scenario.Expectation{
		{Hits: "checkout", Count: "== 20"},
		{Hits: "charge", Where: `req.Amount >= 10 && req.Currency == "EUR"`},
		{Hits: "charge", Where: "!approved", Count: "== 2"},
		{Hits: "checkout", Where: "err == nil"},
		{Order: []string{"price", "charge", "checkout"}, By: by},
		{Within: 3 * time.Millisecond, From: "price", To: "checkout", By: by},
		{Never: "refuse"},
	}, time.Microsecond)
	for _, o := range res.Outcomes {
		if !o.OK {
			t.Errorf("%s: %s %+v", o.Title, o.Detail, o.Culprits)
		}
	}
	res = scenario.Evaluate(hs, []scenario.Expectation{
		{Hits: "charge", Where: "req.Amount < 20"},
		{Order: []string{"checkout", "price"}, By: by},
		{Within: time.Millisecond, From: "price", To: "checkout", By: by},
		{Never: "checkout"},
		{Hits: "charge", Where: "req.Card.Number != ''"},
	}, time.Microsecond)
	for i, want := range []string{
		"req.Amount=20 — req.Amount < 20 is false",
		"request ord-0000: price came before checkout",
		"request ord-0000: checkout came 2ms after price, want within 1ms",
		"err=nil",
		"req.Card was not captured: req holds Amount, Currency, OrderID",
	} {
		o := res.Outcomes[i]
		if o.OK || len(o.Culprits) == 0 {
			t.Errorf("%s held", o.Title)
			continue
		}
		if line := culpritText(o.Culprits[0]); !strings.Contains(line, want) {
			t.Errorf("%s: the first culprit says %q, want %q", o.Title, line, want)
		}
	}
	// Across hosts, closer than their clocks' bounds: uncertain, neither
	// held nor broken, and said so.
	raw := rawHits(20, int64(5*time.Millisecond))
	for i := range raw {
		if raw[i].Tracepoint == "charge" {
			raw[i].Host = "other"
		}
	}
	hs = scenario.Order(raw)
	res = scenario.Evaluate(hs, []scenario.Expectation{
		{Order: []string{"price", "charge"}, By: by},
		{Within: time.Millisecond, From: "price", To: "charge", By: by},
	}, 5*time.Millisecond)
	for _, o := range res.Outcomes {
		if o.OK || o.Uncertain != 20 || !strings.Contains(o.Detail, "no request could be checked; 20 uncertain") {
			t.Errorf("%s: want 20 uncertain requests and a failure, got %+v", o.Title, o)
		}
	}
}

func culpritText(c scenario.Culprit) string {
	var b strings.Builder
	for _, v := range c.Values {
		b.WriteString(v.Name + "=" + v.Value + " ")
	}
	b.WriteString("— " + c.Note)
	return b.String()
}

// FuzzEvaluate checks that no expression or captured value panics the
// evaluator.
func FuzzEvaluate(f *testing.F) {
	f.Add("req.Amount > 0", "float64", "12.5", ">= 1")
	f.Add("o.ID in ['a']", "*main.Order", "nil", "== 0")
	f.Add("len(req) / 0", "[]int", "[]int len: 3", "x")
	f.Fuzz(func(t *testing.T, where, typ, value, count string) {
		hs := hits(2)
		hs[1].Args = append(hs[1].Args, fleet.Variable{Name: "v", Type: typ, Value: value})
		hs[1].Args = append(hs[1].Args, fleet.Variable{Name: "w", Type: typ, Value: value, Children: []fleet.Variable{{Name: "x", Type: typ, Value: value}}})
		scenario.Evaluate(hs, []scenario.Expectation{
			{Hits: "charge", Where: where, Count: count},
			{Hits: "charge", Where: where},
			{Order: []string{"price", "charge"}, By: map[string]string{"*": where}},
		}, time.Millisecond)
	})
}

// BenchmarkEvaluate measures evaluation over the demo's hits: a count, a
// predicate, an order by request and a time bound, per hit. Besides hits
// per second of wall time it reports hits per second of the process's CPU
// time, which a machine shared with other work slows much less.
func BenchmarkEvaluate(b *testing.B) {
	hs := hits(10000)
	exps := []scenario.Expectation{
		{Hits: "checkout", Count: "== 10000"},
		{Hits: "charge", Where: `req.Amount > 0 && req.Currency == "EUR"`},
		{Order: []string{"price", "charge", "checkout"}, By: by},
		{Within: 5 * time.Millisecond, From: "price", To: "checkout", By: by},
	}
	cpu0 := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		if res := scenario.Evaluate(hs, exps, time.Microsecond); !res.OK() {
			b.Fatal(res.Outcomes)
		}
	}
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(len(hs)*b.N)/b.Elapsed().Seconds(), "hits/s")
	b.ReportMetric(float64(len(hs)*b.N)/cpu.Seconds(), "hits/cpu-s")
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestEvaluateByTrace checks that hits which captured a W3C trace context
// are grouped by its trace id when by says nothing, as the timeline
// groups them into requests.
func TestEvaluateByTrace(t *testing.T) {
	raw := rawHits(20, 1000)
	for i := range raw {
		raw[i].Trace = &fleet.TraceContext{TraceID: fmt.Sprintf("%032x", i/3+1), SpanID: fmt.Sprintf("%016x", i+1)}
	}
	res := scenario.Evaluate(scenario.Order(raw), []scenario.Expectation{
		{Order: []string{"price", "charge", "checkout"}},
		{Within: 3 * time.Millisecond, From: "price", To: "checkout"},
		{Order: []string{"checkout", "price"}},
	}, time.Microsecond)
	for i, want := range []string{"in order in 20 of 20 requests", "20 of 20 requests", "out of order or incomplete in 20 of 20 requests"} {
		if o := res.Outcomes[i]; o.OK != (i < 2) || !strings.Contains(o.Detail, want) {
			t.Errorf("%s: %v %q, want %q", o.Title, o.OK, o.Detail, want)
		}
	}
	if c := res.Outcomes[2].Culprits; len(c) == 0 || !strings.Contains(c[0].Note, "request trace 00000000000000000000000000000001: price came before checkout") {
		t.Errorf("the culprit does not name the trace: %+v", c)
	}
}
