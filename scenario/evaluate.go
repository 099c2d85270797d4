package scenario

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"

	"github.com/riptrace/riptrace/fleet"
)

// Result is what a run found.
type Result struct {
	Name     string    `json:"name"`
	Outcomes []Outcome `json:"expectations"`
	// Errors are what went wrong with the run itself (a step that failed,
	// a service that exited); each fails the run.
	Errors []string `json:"errors,omitempty"`
	// Notes are what may have made the results less than complete
	// without failing the run (hits the run could not wait for).
	Notes []string `json:"notes,omitempty"`
	Hits  int      `json:"hits"`
	// Dropped counts hits the agents dropped (rate limit, buffer): counts
	// are then lower bounds, and each outcome says so.
	Dropped uint64 `json:"dropped,omitempty"`
	Timing  Timing `json:"timing"`
}

// OK reports whether the run happened and every expectation held.
func (r *Result) OK() bool {
	if len(r.Errors) > 0 {
		return false
	}
	for _, o := range r.Outcomes {
		if !o.OK {
			return false
		}
	}
	return true
}

// Outcome is one expectation's verdict.
type Outcome struct {
	Title string `json:"title"`
	Kind  string `json:"kind"`
	OK    bool   `json:"ok"`
	// Detail says what was found ("4 hits"); for a failure, what broke it.
	Detail string `json:"detail"`
	// Culprits are the hits that broke it (at most maxCulprits), in order.
	Culprits []Culprit `json:"culprits,omitempty"`
	// More counts the culprits left out.
	More int `json:"more,omitempty"`
	// Uncertain counts the requests whose order (or time bound) the
	// capture clocks cannot settle: they neither pass nor fail it.
	Uncertain int `json:"uncertain,omitempty"`
}

// DefaultClockTolerance is how far apart the coordinated times of two
// hits may be off when one of them has no clock reading (its agent could
// not compare its clock with the server's), unless the scenario says
// otherwise. Hits of two hosts with readings are as far apart as their
// clocks' error bounds together; hits of two processes of one host share
// its clock, give or take SameHostSkew.
const DefaultClockTolerance = 50 * time.Millisecond

// SameHostSkew is how far the capture times of two processes of one host
// may be off: Delve reads the wall clock while the thread is stopped, and
// the eBPF backend converts the kernel's monotonic clock to it with a
// difference it measures to within microseconds.
const SameHostSkew = 20 * time.Microsecond

// pairTolerance is how far apart hits i and j may be off in coordinated
// time.
func (ev *evaluator) pairTolerance(i, j int) time.Duration {
	a, b := &ev.hits[i], &ev.hits[j]
	switch {
	case a.Host == b.Host && a.Pid == b.Pid:
		return 0
	case a.Bound == nil || b.Bound == nil || a.Note != "" || b.Note != "":
		return ev.tolerance
	case a.Host == b.Host:
		return SameHostSkew
	}
	return time.Duration(*a.Bound + *b.Bound)
}

// gap is how long after hit j hit i ran, in coordinated time.
func (ev *evaluator) gap(i, j int) time.Duration {
	return ev.hits[i].CoordinatedTime.Sub(ev.hits[j].CoordinatedTime)
}

// uncertain reports whether hits i and j ran too close together for the
// clocks to tell their order.
func (ev *evaluator) uncertain(i, j int) bool {
	tol, d := ev.pairTolerance(i, j), ev.gap(i, j)
	return d < tol && d > -tol
}

// Culprit is a hit that broke an expectation, with the values that mattered.
type Culprit struct {
	Tracepoint string    `json:"tracepoint"`
	Host       string    `json:"host"`
	Pid        int       `json:"pid"`
	Seq        uint64    `json:"seq"`
	Number     string    `json:"number"` // as people see it: fleet.Hit.Number
	Time       time.Time `json:"time"`
	File       string    `json:"file"`
	Line       int       `json:"line"`
	Request    string    `json:"request,omitempty"`
	Values     []Value   `json:"values,omitempty"`
	Note       string    `json:"note,omitempty"`
}

// Value is a named value of a culprit: a variable path and its value.
type Value struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

const maxCulprits = 5

// Evaluate checks exps against hits in timeline order (see Order), with
// the given tolerance for hits without a clock reading (see
// DefaultClockTolerance).
func Evaluate(hits []fleet.Placed, exps []Expectation, tolerance time.Duration) *Result {
	ev := &evaluator{hits: hits, envs: make([]map[string]any, len(hits)), tolerance: tolerance}
	res := &Result{Hits: len(hits)}
	for i := range hits {
		res.Dropped += hits[i].Dropped
	}
	for i := range exps {
		o := ev.check(&exps[i])
		if !o.OK && res.Dropped > 0 {
			o.Detail += fmt.Sprintf(" (the agents dropped %d hits: counts are lower bounds)", res.Dropped)
		}
		res.Outcomes = append(res.Outcomes, o)
	}
	return res
}

type evaluator struct {
	tolerance time.Duration
	hits      []fleet.Placed
	envs      []map[string]any // built on first use
}

func (ev *evaluator) env(i int) map[string]any {
	if ev.envs[i] == nil {
		ev.envs[i] = hitEnv(&ev.hits[i].Hit)
	}
	return ev.envs[i]
}

// predicate is a compiled expression with the variable paths it reads.
type predicate struct {
	src   string
	prog  *vm.Program
	paths [][]string
}

func compile(src string) (*predicate, error) {
	tree, err := expr.Compile(src)
	if err != nil {
		// expr's error ends with the expression drawn over lines: the
		// position in the first line says it as well.
		why, _, _ := strings.Cut(err.Error(), "\n")
		return nil, fmt.Errorf("%q is not an expression (%s): write one in expr's syntax, such as req.Amount > 0 && err == nil", src, why)
	}
	p := &predicate{src: src, prog: tree}
	seen := map[string]bool{}
	ast.Find(tree.Node(), func(n ast.Node) bool {
		if path := memberPath(n); path != nil && !seen[strings.Join(path, ".")] {
			seen[strings.Join(path, ".")] = true
			p.paths = append(p.paths, path)
		}
		return false
	})
	// Keep the longest paths: req.Amount says more than req.
	var keep [][]string
	for _, a := range p.paths {
		longer := false
		for _, b := range p.paths {
			if len(b) > len(a) && strings.HasPrefix(strings.Join(b, ".")+".", strings.Join(a, ".")+".") {
				longer = true
			}
		}
		if !longer {
			keep = append(keep, a)
		}
	}
	p.paths = keep
	return p, nil
}

// memberPath is ["req", "Amount"] for req.Amount, nil for anything else.
func memberPath(n ast.Node) []string {
	switch n := n.(type) {
	case *ast.IdentifierNode:
		return []string{n.Value}
	case *ast.MemberNode:
		prop, ok := n.Property.(*ast.StringNode)
		if !ok {
			return nil
		}
		if base := memberPath(n.Node); base != nil {
			return append(base, prop.Value)
		}
	}
	return nil
}

// eval runs p on hit i: its value, the values of the paths it read, and an
// error when a path was not captured or the expression failed.
func (ev *evaluator) eval(p *predicate, i int) (any, []Value, error) {
	env := ev.env(i)
	var vals []Value
	for _, path := range p.paths {
		v, err := resolve(env, path)
		if err != nil {
			return nil, vals, err
		}
		vals = append(vals, Value{strings.Join(path, "."), show(v)})
	}
	out, err := expr.Run(p.prog, env)
	if err != nil {
		return nil, vals, fmt.Errorf("evaluating %s: %v", p.src, err)
	}
	return out, vals, nil
}

func (ev *evaluator) culprit(i int, vals []Value, note string) Culprit {
	h := &ev.hits[i]
	c := Culprit{Tracepoint: h.Tracepoint, Host: h.Host, Pid: h.Pid, Seq: h.Seq, Number: h.Number(), Time: h.CoordinatedTime,
		File: h.File, Line: h.Line, Values: vals, Note: note}
	switch {
	case h.Late:
		c.Note = joinNote(c.Note, "late: it reached the stream after hits that ran after it, and is judged at its coordinated time")
	case h.Uncertain && h.Note != "":
		c.Note = joinNote(c.Note, "placed by its arrival: "+h.Note)
	}
	return c
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func (o *Outcome) add(c Culprit) {
	if len(o.Culprits) < maxCulprits {
		o.Culprits = append(o.Culprits, c)
	} else {
		o.More++
	}
}

var countRe = regexp.MustCompile(`^\s*(==|!=|>=|<=|>|<)?\s*([0-9]+)\s*$`)

// parseCount reads "== 4", ">= 1" or "4".
func parseCount(s string) (op string, n int, err error) {
	m := countRe.FindStringSubmatch(s)
	if m == nil {
		return "", 0, fmt.Errorf("count %q: write an operator and a number, such as \"== 4\" or \">= 1\"", s)
	}
	n, err = strconv.Atoi(m[2])
	if err != nil {
		return "", 0, fmt.Errorf("count %q: %s is too large", s, m[2])
	}
	op = m[1]
	if op == "" {
		op = "=="
	}
	return op, n, nil
}

func compare(got int, op string, n int) bool {
	switch op {
	case "==":
		return got == n
	case "!=":
		return got != n
	case ">=":
		return got >= n
	case "<=":
		return got <= n
	case ">":
		return got > n
	}
	return got < n
}

func (ev *evaluator) check(e *Expectation) Outcome {
	o := Outcome{Title: e.Title(), Kind: e.Kind()}
	switch o.Kind {
	case "never":
		ev.never(e, &o)
	case "count", "where":
		ev.countWhere(e, &o)
	case "order":
		ev.order(e, &o)
	case "within":
		ev.within(e, &o)
	default:
		o.Detail = "the expectation says nothing: give it count, where, never, order or within"
	}
	return o
}

func (ev *evaluator) never(e *Expectation, o *Outcome) {
	n := 0
	for i := range ev.hits {
		if ev.hits[i].Tracepoint == e.Never {
			n++
			o.add(ev.culprit(i, ev.allValues(i), ""))
		}
	}
	o.OK = n == 0
	if o.OK {
		o.Detail = "not hit"
	} else {
		o.Detail = fmt.Sprintf("hit %d times", n)
	}
}

// allValues are a hit's arguments and locals, for a hit that should not
// have happened: everything may matter.
func (ev *evaluator) allValues(i int) []Value {
	h := &ev.hits[i]
	var vals []Value
	for _, vs := range [][]fleet.Variable{h.Args, h.Locals} {
		for _, v := range vs {
			vals = append(vals, Value{v.Name, clip(v.Value, 60)})
		}
	}
	return vals
}

func (ev *evaluator) countWhere(e *Expectation, o *Outcome) {
	var p *predicate
	if e.Where != "" {
		var err error
		if p, err = compile(e.Where); err != nil {
			o.Detail = "where: " + err.Error()
			return
		}
	}
	total, matched, broken := 0, 0, 0
	var matches []int
	for i := range ev.hits {
		if ev.hits[i].Tracepoint != e.Hits {
			continue
		}
		total++
		if p == nil {
			matched++
			matches = append(matches, i)
			continue
		}
		out, vals, err := ev.eval(p, i)
		switch {
		case err != nil:
			broken++
			o.add(ev.culprit(i, vals, err.Error()))
		case out == true:
			matched++
			matches = append(matches, i)
		default:
			if e.Count == "" {
				broken++
				o.add(ev.culprit(i, vals, fmt.Sprintf("%s is %s", e.Where, show(out))))
			}
		}
	}
	if e.Count == "" {
		o.OK = broken == 0 && total > 0
		switch {
		case total == 0:
			o.Detail = fmt.Sprintf("no hit of %s: nothing to check (check that the steps reach it)", e.Hits)
		case o.OK:
			o.Detail = fmt.Sprintf("all %d hits", total)
		default:
			o.Detail = fmt.Sprintf("%d of %d hits broke it", broken, total)
		}
		return
	}
	op, n, err := parseCount(e.Count)
	if err != nil {
		o.Detail = err.Error()
		return
	}
	o.OK = compare(matched, op, n) && (p == nil || broken == 0)
	what := "hits"
	if p != nil {
		what = fmt.Sprintf("of %d hits match", total)
	}
	o.Detail = fmt.Sprintf("%d %s, want %s %d", matched, what, op, n)
	if !o.OK && broken == 0 {
		// Too many: the extra hits are the culprits; too few: show what
		// there was.
		for _, i := range matches {
			var vals []Value
			if p != nil {
				_, vals, _ = ev.eval(p, i)
			}
			o.add(ev.culprit(i, vals, ""))
		}
	}
}

// groups splits the hits of names by request, keyed by e.By, or else by
// the W3C trace id a hit captured (the timeline's request); it returns
// the groups in order of their first hit, and culprits for hits whose key
// could not be read.
func (ev *evaluator) groups(e *Expectation, names []string, o *Outcome) (keys []string, byKey map[string][]int, ok bool) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	preds := map[string]*predicate{}
	for name, src := range e.By {
		p, err := compile(src)
		if err != nil {
			o.Detail = fmt.Sprintf("by.%s: %v", name, err)
			return nil, nil, false
		}
		preds[name] = p
	}
	byKey = map[string][]int{}
	ok = true
	for i := range ev.hits {
		tp := ev.hits[i].Tracepoint
		if !want[tp] {
			continue
		}
		key := "the whole run"
		p := preds[tp]
		if p == nil {
			p = preds["*"]
		}
		switch {
		case p != nil:
			out, vals, err := ev.eval(p, i)
			if err != nil {
				ok = false
				o.add(ev.culprit(i, vals, "no request key: "+err.Error()))
				continue
			}
			key = fmt.Sprint(out)
		case ev.hits[i].Group != "":
			// The timeline's request: the W3C trace id the hit captured.
			key = "trace " + ev.hits[i].Group
		case len(e.By) > 0:
			ok = false
			o.add(ev.culprit(i, nil, fmt.Sprintf("no request key: by names no expression for %s (or \"*\"), and it captured no trace context", tp)))
			continue
		}
		if _, seen := byKey[key]; !seen {
			keys = append(keys, key)
		}
		byKey[key] = append(byKey[key], i)
	}
	return keys, byKey, ok
}

// first is the first hit of name among idx (in order), or -1.
func (ev *evaluator) first(idx []int, name string) int {
	for _, i := range idx {
		if ev.hits[i].Tracepoint == name {
			return i
		}
	}
	return -1
}

func (ev *evaluator) order(e *Expectation, o *Outcome) {
	keys, byKey, ok := ev.groups(e, e.Order, o)
	bad := 0
	for _, key := range keys {
		idx := byKey[key]
		prev, prevName := -1, ""
		for _, name := range e.Order {
			i := ev.first(idx, name)
			if i < 0 {
				bad++
				c := ev.culprit(idx[0], nil, fmt.Sprintf("request %s has no hit of %s", key, name))
				c.Request = key
				o.add(c)
				break
			}
			// Too close across processes for the clocks: neither in order
			// nor out of it.
			if prev >= 0 && ev.uncertain(i, prev) {
				o.Uncertain++
				break
			}
			if prev >= 0 && i < prev {
				bad++
				for _, j := range []int{i, prev} { // in order: i ran first
					c := ev.culprit(j, nil, fmt.Sprintf("request %s: %s came before %s", key, name, prevName))
					c.Request = key
					o.add(c)
				}
				break
			}
			prev, prevName = i, name
		}
	}
	o.OK = ok && bad == 0 && len(keys) > o.Uncertain
	switch {
	case len(keys) > 0 && len(keys) == o.Uncertain:
		o.Detail = "no request could be checked"
	case len(keys) == 0 && ok:
		o.Detail = "no hits of " + strings.Join(e.Order, ", ") + ": nothing to check"
	case o.OK:
		o.Detail = fmt.Sprintf("in order in %d of %d requests (timeline order)", len(keys)-o.Uncertain, len(keys))
	default:
		o.Detail = fmt.Sprintf("out of order or incomplete in %d of %d requests (timeline order)", bad, len(keys))
	}
	o.Detail += ev.uncertainNote(o.Uncertain)
}

func (ev *evaluator) within(e *Expectation, o *Outcome) {
	if e.From == "" || e.To == "" || e.Within <= 0 {
		o.Detail = "within needs from, to and a duration above 0"
		return
	}
	keys, byKey, ok := ev.groups(e, []string{e.From, e.To}, o)
	bad := 0
	var worst time.Duration
	for _, key := range keys {
		idx := byKey[key]
		a, b := ev.first(idx, e.From), ev.first(idx, e.To)
		var note string
		switch {
		case a < 0 || b < 0:
			note = fmt.Sprintf("request %s has no hit of %s", key, map[bool]string{true: e.From, false: e.To}[a < 0])
		default:
			d := ev.gap(b, a)
			worst = max(worst, d)
			// The true gap is d give or take the clocks' tolerance:
			// certain only when all of that range passes or fails.
			if tol := ev.pairTolerance(a, b); tol > 0 && d > -tol && d < e.Within+tol && (d < tol || d > e.Within-tol) {
				o.Uncertain++
				continue
			}
			if d < 0 || d > e.Within {
				note = fmt.Sprintf("request %s: %s came %v after %s, want within %v", key, e.To, d, e.From, e.Within)
			}
		}
		if note != "" {
			bad++
			for _, j := range []int{a, b} {
				if j >= 0 {
					c := ev.culprit(j, nil, note)
					c.Request = key
					o.add(c)
				}
			}
		}
	}
	o.OK = ok && bad == 0 && len(keys) > o.Uncertain
	switch {
	case len(keys) > 0 && len(keys) == o.Uncertain:
		o.Detail = "no request could be checked"
	case len(keys) == 0 && ok:
		o.Detail = fmt.Sprintf("no hits of %s and %s: nothing to check", e.From, e.To)
	case o.OK:
		o.Detail = fmt.Sprintf("%d of %d requests, the slowest %v", len(keys)-o.Uncertain, len(keys), worst)
	default:
		o.Detail = fmt.Sprintf("broken in %d of %d requests", bad, len(keys))
	}
	o.Detail += ev.uncertainNote(o.Uncertain)
}

func (ev *evaluator) uncertainNote(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("; %d uncertain: their hits are closer than their clocks' error bounds can tell apart", n)
}
