package ebpf_test

import (
	"bufio"
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/delve"
	"github.com/riptrace/riptrace/agent/ebpf"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/internal/testsupport"
)

// The differential corpus traces every line of real programs with both
// backends and holds the eBPF backend's values to the Delve backend's:
// wherever eBPF shows a value it must be Delve's, and otherwise it must say
// not captured. Each program runs as three identical instances driven
// through the same deterministic executions: two traced by Delve, one by
// eBPF. A value on which the two Delve instances disagree (a time, say)
// depends on the execution, not on the backend, and is left out; every
// other value of the eBPF instance is compared.
//
// That evidence is one pair of runs: a value with few possible outcomes,
// such as the order a two-key map is ranged in, would often agree in the
// two Delve instances and differ in the eBPF one. So the programs are made
// to run the same way every time instead of such values being left out:
// the targets range maps in sorted order, and a program whose values hold
// goroutine ids runs on one P (GOMAXPROCS=1), where goroutines are started
// in program order and so get the same ids in every instance. A difference
// left is then a backend's.
//
// `make test` runs the corpus target, optimized: contexts, interfaces,
// maps, closures, generics and channels on every line. RIPTRACE_CORPUS=full
// (`make differential`) runs every program, optimized and unoptimized.

// corpusProgram is one program of the corpus.
type corpusProgram struct {
	name string
	full bool // only in the full corpus
	// start starts one instance, built with flags, and returns its
	// processes to trace and how to drive execution k (from 1) through
	// it, returning once the execution has ended.
	start func(t *testing.T, flags []string) corpusInstance
}

type corpusInstance struct {
	procs []corpusProc
	drive func(t *testing.T, k int)
}

// corpusProc is a process to trace at every line of file.
type corpusProc struct {
	pid  int
	file string // the source file, from this package's directory
	path string // how tracepoints name it
}

// corpusRuns is how many executions each program goes through: a second
// one reads values the first left behind (a map grown, a counter moved).
const corpusRuns = 2

var corpusPrograms = []corpusProgram{
	{name: "corpus", start: func(t *testing.T, flags []string) corpusInstance {
		const dir = "testdata/targets/corpus"
		p := agenttest.Start(t, agenttest.BuildTarget(t, dir, flags...))
		return corpusInstance{
			procs: []corpusProc{{pid: p.Pid, file: dir + "/main.go", path: "corpus/main.go"}},
			drive: func(t *testing.T, k int) {
				signalAndWait(t, p, syscall.SIGUSR1, fmt.Sprintf("RUN k=%d ", k))
			},
		}
	}},
	// gid and id, total that adds gid, and b, the stack header goid reads
	// id from, hold a goroutine id: see onP.
	{name: "values", full: true, start: func(t *testing.T, flags []string) corpusInstance {
		p := testsupport.StartWith(t, onP, agenttest.BuildTarget(t, valuesDir, flags...), "-every", "0")
		return corpusInstance{
			procs: []corpusProc{{pid: p.Pid, file: valuesDir + "/main.go", path: "values/main.go"}},
			drive: func(t *testing.T, k int) {
				signalAndWait(t, p, syscall.SIGUSR2, strings.Repeat("CALLED n=-1\n", k))
			},
		}
	}},
	{name: "demo", full: true, start: func(t *testing.T, flags []string) corpusInstance {
		pay := agenttest.Start(t, agenttest.BuildTarget(t, "../../demo/payments", flags...))
		ord := agenttest.Start(t, agenttest.BuildTarget(t, "../../demo/orders", flags...), "-payments", "http://"+pay.Addr)
		gw := agenttest.Start(t, agenttest.BuildTarget(t, "../../demo/gateway", flags...), "-orders", "http://"+ord.Addr)
		return corpusInstance{
			procs: []corpusProc{
				{pid: gw.Pid, file: "../../demo/gateway/main.go", path: "gateway/main.go"},
				{pid: ord.Pid, file: "../../demo/orders/main.go", path: "orders/main.go"},
				{pid: pay.Pid, file: "../../demo/payments/main.go", path: "payments/main.go"},
			},
			drive: func(t *testing.T, k int) {
				// One approved order, one refused by payments, one
				// invalid: every branch of the three services.
				for _, body := range []string{
					`{"customer":"alice","items":[{"sku":"book","qty":2},{"sku":"pen","qty":3},{"sku":"book","qty":1}]}`,
					`{"customer":"bob","items":[{"sku":"laptop","qty":40}]}`,
					`{"customer":"","items":[]}`,
				} {
					postCheckout(t, gw.Addr, body)
				}
			},
		}
	}},
}

// onP runs a program on one P. Goroutine ids come from a cache per P,
// so with several they depend on which P started each goroutine: the values
// target's SIGUSR2 goroutine got six different ids (5 to 25) in 18 runs
// on two CPUs, and 10 in every run on one P.
func onP(c *exec.Cmd) { c.Env = append(os.Environ(), "GOMAXPROCS=1") }

func signalAndWait(t *testing.T, p *agenttest.Proc, sig syscall.Signal, out string) {
	t.Helper()
	if err := syscall.Kill(p.Pid, sig); err != nil {
		t.Fatal(err)
	}
	p.WaitOutput(t, out, 60*time.Second)
}

func postCheckout(t *testing.T, addr, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/checkout", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("posting a checkout: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// TestCorpus runs the differential corpus (see above).
func TestCorpus(t *testing.T) {
	needEBPF(t)
	full := os.Getenv("RIPTRACE_CORPUS") == "full"
	builds := []struct {
		name  string
		flags []string
	}{{"optimized", nil}}
	if full {
		builds = append(builds, struct {
			name  string
			flags []string
		}{"noopt", []string{agenttest.NoOpt}})
	}
	var total corpusCount
	for _, build := range builds {
		for _, prog := range corpusPrograms {
			if prog.full && !full {
				continue
			}
			t.Run(build.name+"/"+prog.name, func(t *testing.T) {
				c := runCorpus(t, prog, build.flags)
				t.Logf("%s", c)
				total.add(c)
			})
		}
	}
	t.Logf("corpus total: %s", total)
}

// corpusCount counts what the corpus compared. A pair is a variable
// (argument or local) of one hit of one line: it is equal when every value
// of its tree that eBPF shows is Delve's, with some parts not captured when
// eBPF left any out, differing when any value differs, and execution-bound
// when the two Delve instances disagree on every part of it. Leaf values
// the two Delve instances disagree on are counted as they are left out,
// so that a run shows how much the evidence of the two left out.
type corpusCount struct {
	lines, hits                                      int
	pairs, equal, partly, notCaptured, differ, bound int
	leaves, leavesDiffer, leavesBound, unassigned    int
	diffs, gaps                                      []string
}

func (c corpusCount) String() string {
	return fmt.Sprintf("%d lines, %d hits; %d (line, variable) pairs: %d equal, %d partly not captured, %d not captured, %d differ, %d execution-bound; %d leaf values compared, %d differ, %d execution-bound left out; %d unreadable only on eBPF; %d locals not assigned yet left out",
		c.lines, c.hits, c.pairs, c.equal, c.partly, c.notCaptured, c.differ, c.bound, c.leaves, c.leavesDiffer, c.leavesBound, len(c.gaps), c.unassigned)
}

func (c *corpusCount) add(o corpusCount) {
	c.lines += o.lines
	c.hits += o.hits
	c.pairs += o.pairs
	c.equal += o.equal
	c.partly += o.partly
	c.notCaptured += o.notCaptured
	c.differ += o.differ
	c.bound += o.bound
	c.leaves += o.leaves
	c.leavesDiffer += o.leavesDiffer
	c.leavesBound += o.leavesBound
	c.unassigned += o.unassigned
	c.gaps = append(c.gaps, o.gaps...)
}

// collector gathers a target's hits by tracepoint, in order.
type collector struct {
	mu     sync.Mutex
	hits   map[string][]fleet.Hit
	faults []string
}

func collect(t *testing.T, tgt agent.Target) *collector {
	c := &collector{hits: make(map[string][]fleet.Hit)}
	go func() {
		for h := range tgt.Hits() {
			c.mu.Lock()
			if h.Fault != nil {
				c.faults = append(c.faults, h.Fault.Error())
			} else {
				c.hits[h.Tracepoint] = append(c.hits[h.Tracepoint], h.Hit)
			}
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *collector) count(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.hits[id])
}

func runCorpus(t *testing.T, prog corpusProgram, flags []string) corpusCount {
	// Instances 0 and 1 are traced by Delve, 2 by eBPF.
	var insts [3]corpusInstance
	for i := range insts {
		insts[i] = prog.start(t, flags)
	}
	type traced struct {
		ebpf  agent.Target
		col   [3]*collector
		ids   []string // of lines both backends placed
		lines map[string]int
	}
	var procs []traced
	for pi := range insts[0].procs {
		var tr traced
		var tgts [3]agent.Target
		for i := range insts {
			var b agent.Backend = delve.New(io.Discard)
			if i == 2 {
				b = ebpf.New()
			}
			tgts[i] = attach(t, b, insts[i].procs[pi].pid)
			tr.col[i] = collect(t, tgts[i])
		}
		tr.ebpf = tgts[2]
		p := insts[0].procs[pi]
		tr.lines = make(map[string]int)
		for line := 1; line <= countLines(t, p.file); line++ {
			id := fmt.Sprintf("L%d", line)
			spec := agent.Tracepoint{ID: id, Location: fleet.Location{Path: p.path, Line: line}, Capture: fleet.DefaultCapture}
			placed := 0
			var where [3]int
			var pcs [3][]uint64
			for i, tgt := range tgts {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				pl, err := tgt.Set(ctx, spec)
				cancel()
				if err == nil {
					placed++
					where[i] = pl.Line
					pcs[i] = pl.PCs
				}
			}
			switch {
			case placed == 3 && where[0] == where[2]:
				slices.Sort(pcs[0])
				slices.Sort(pcs[2])
				if !slices.Equal(pcs[0], pcs[2]) {
					t.Logf("line %d: delve at %x, ebpf at %x", line, pcs[0], pcs[2])
				}
				tr.ids = append(tr.ids, id)
				tr.lines[id] = line
			case placed > 0:
				// A line one backend places and the other does not is
				// not a value to compare; clear it everywhere.
				for _, tgt := range tgts {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					tgt.Clear(ctx, id)
					cancel()
				}
			}
		}
		procs = append(procs, tr)
	}
	for k := 1; k <= corpusRuns; k++ {
		for i := range insts {
			insts[i].drive(t, k)
		}
	}
	// Wait until every instance has every hit: the same count of each
	// line in the three.
	agenttest.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		for _, tr := range procs {
			for _, id := range tr.ids {
				n0, n1, n2 := tr.col[0].count(id), tr.col[1].count(id), tr.col[2].count(id)
				if n0 != n1 || n0 != n2 {
					// A fault removes the tracepoint: say why.
					tr.col[2].mu.Lock()
					faults := tr.col[2].faults
					tr.col[2].mu.Unlock()
					return fmt.Errorf("line %d: delve %d and %d hits, ebpf %d (faults: %q)", tr.lines[id], n0, n1, n2, faults)
				}
			}
		}
		return nil
	})
	var c corpusCount
	for pi, tr := range procs {
		frames, direct, byDelve := ebpf.DirectReads(tr.ebpf)
		t.Logf("%s: the direct decoder read %d frames, %d variables itself and %d through Delve", insts[0].procs[pi].path, frames, direct, byDelve)
		decls := declarations(t, insts[0].procs[pi].file)
		for i, col := range tr.col {
			col.mu.Lock()
			if len(col.faults) > 0 {
				t.Errorf("instance %d: faults: %v", i, col.faults)
			}
			col.mu.Unlock()
		}
		for _, id := range tr.ids {
			a, b, e := tr.col[0].hits[id], tr.col[1].hits[id], tr.col[2].hits[id]
			if len(a) > 0 {
				c.lines++
			}
			for k := range a {
				c.hits++
				what := fmt.Sprintf("%s:%d hit %d", insts[0].procs[pi].path, tr.lines[id], k+1)
				compareCorpusHit(&c, what, a[k], b[k], e[k], decls.at(tr.lines[id]))
			}
		}
	}
	for _, d := range c.diffs {
		t.Error(d)
	}
	for _, g := range c.gaps {
		t.Logf("unreadable only on eBPF: %s", g)
	}
	return c
}

// declSpans are the names each statement of a file declares, with the
// lines the statement spans.
type declSpans []struct {
	from, to int
	names    []string
}

// declarations reads which statements of file declare which names.
func declarations(t *testing.T, file string) declSpans {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out declSpans
	add := func(n ast.Node, idents ...ast.Expr) {
		var names []string
		for _, e := range idents {
			if id, ok := e.(*ast.Ident); ok {
				names = append(names, id.Name)
			}
		}
		out = append(out, struct {
			from, to int
			names    []string
		}{fset.Position(n.Pos()).Line, fset.Position(n.End()).Line, names})
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.AssignStmt:
			if n.Tok == token.DEFINE {
				add(n, n.Lhs...)
			}
		case *ast.ValueSpec:
			var idents []ast.Expr
			for _, id := range n.Names {
				idents = append(idents, id)
			}
			add(n, idents...)
		case *ast.RangeStmt:
			if n.Tok == token.DEFINE {
				// Only the header: the body is its own statements.
				add(n, n.Key, n.Value)
				out[len(out)-1].to = fset.Position(n.Body.Lbrace).Line
			}
		}
		return true
	})
	return out
}

// at returns the names declared by the statements on line.
func (d declSpans) at(line int) map[string]bool {
	names := make(map[string]bool)
	for _, s := range d {
		if line >= s.from && line <= s.to {
			for _, n := range s.names {
				names[n] = true
			}
		}
	}
	return names
}

func countLines(t *testing.T, file string) int {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	for sc := bufio.NewScanner(f); sc.Scan(); {
		n++
	}
	return n
}

func compareCorpusHit(c *corpusCount, what string, a, b, e fleet.Hit, unassigned map[string]bool) {
	if e.Line != a.Line || e.Function != a.Function {
		c.diffs = append(c.diffs, fmt.Sprintf("%s: delve at line %d in %s, ebpf at line %d in %s", what, a.Line, a.Function, e.Line, e.Function))
		return
	}
	for _, kind := range []struct {
		name    string
		a, b, e []fleet.Variable
	}{{"args", a.Args, b.Args, e.Args}, {"locals", a.Locals, b.Locals, e.Locals}} {
		if len(kind.a) != len(kind.b) {
			continue // the executions differ in which variables are live
		}
		if fmt.Sprint(names(kind.a)) != fmt.Sprint(names(kind.e)) {
			c.diffs = append(c.diffs, fmt.Sprintf("%s %s: delve %v, ebpf %v", what, kind.name, names(kind.a), names(kind.e)))
			continue
		}
		for i := range kind.a {
			if kind.name == "locals" && unassigned[kind.a[i].Name] {
				// Declared by the statement the hit is on, so not
				// assigned yet: both backends show what its storage held
				// before, which differs between runs of the program.
				c.unassigned++
				continue
			}
			var v varCount
			v.compare(filepath.Base(what)+" "+kind.a[i].Name, kind.a[i], kind.b[i], kind.e[i])
			c.pairs++
			c.leaves += v.leaves
			c.leavesDiffer += len(v.diffs)
			c.leavesBound += v.bound
			c.gaps = append(c.gaps, v.gaps...)
			switch {
			case len(v.diffs) > 0:
				c.differ++
				c.diffs = append(c.diffs, fmt.Sprintf("%s %s: %s", what, kind.name, strings.Join(v.diffs, "; ")))
			case v.leaves == 0 && v.notCaptured == 0:
				c.bound++
			case v.leaves == 0:
				c.notCaptured++
			case v.notCaptured > 0:
				c.partly++
			default:
				c.equal++
			}
		}
	}
}

// varCount compares one variable's trees.
type varCount struct {
	leaves, notCaptured int
	bound               int // leaves the two Delve instances disagree on
	diffs, gaps         []string
}

// addr matches addresses, which differ between the instances of a program.
var addr = regexp.MustCompile(`0x[0-9a-f]+`)

func norm(s string) string { return addr.ReplaceAllString(s, "0x…") }

func (v *varCount) compare(what string, a, b, e fleet.Variable) {
	if a.Name != b.Name || a.Type != b.Type {
		return // execution-bound: an interface's dynamic type, say
	}
	if e.Name != a.Name || e.Type != a.Type {
		v.diffs = append(v.diffs, fmt.Sprintf("%s: delve %s %s, ebpf %s %s", what, a.Name, a.Type, e.Name, e.Type))
		return
	}
	if strings.HasPrefix(e.Value, "<not captured") || len(e.Children) == 0 && strings.Contains(e.Value, "not captured") {
		if e.Unreadable == "" && strings.HasPrefix(e.Value, "<not captured") {
			v.diffs = append(v.diffs, fmt.Sprintf("%s: ebpf %q does not say why", what, e.Value))
		}
		v.notCaptured++
		return
	}
	if len(e.Children) == 0 && e.Unreadable != "" && a.Unreadable == "" {
		// Shown unreadable, with the reason, where Delve reads it: a gap,
		// not a wrong value.
		v.gaps = append(v.gaps, fmt.Sprintf("%s: delve %q, ebpf %q: %s", what, a.Value, e.Value, e.Unreadable))
		return
	}
	if len(a.Children) == 0 || len(a.Children) != len(b.Children) {
		if norm(a.Value) != norm(b.Value) {
			v.bound++
			return
		}
		v.leaves++
		if norm(e.Value) != norm(a.Value) {
			v.diffs = append(v.diffs, fmt.Sprintf("%s: delve %q, ebpf %q", what, a.Value, e.Value))
		}
		return
	}
	if len(e.Children) != len(a.Children) && strings.Contains(e.Value, "not captured") && len(e.Children) < len(a.Children) {
		// Delve stops loading an array after a few unreadable elements:
		// compare what eBPF has.
		v.notCaptured++
		for i := range e.Children {
			v.compare(what+"."+a.Children[i].Name, a.Children[i], b.Children[i], e.Children[i])
		}
		return
	}
	if len(e.Children) != len(a.Children) {
		v.leaves++
		v.diffs = append(v.diffs, fmt.Sprintf("%s: delve %q (%d children), ebpf %q (%d children) %s", what, a.Value, len(a.Children), e.Value, len(e.Children), e.Unreadable))
		return
	}
	for i := range a.Children {
		v.compare(what+"."+a.Children[i].Name, a.Children[i], b.Children[i], e.Children[i])
	}
}

// TestConditionNotCaptured: a condition that Delve reads through memory the
// probe did not copy is undecided, not true: the cause of a *cancelCtx (80
// bytes, of which the probe copies 64) would read nil.
func TestConditionNotCaptured(t *testing.T) {
	needEBPF(t)
	const dir = "testdata/targets/corpus"
	p := agenttest.Start(t, agenttest.BuildTarget(t, dir))
	tgt := attach(t, ebpf.New(), p.Pid)
	set(t, tgt, agent.Tracepoint{
		ID:        "c",
		Location:  fleet.Location{Path: "corpus/main.go", Line: agenttest.MarkerLine(t, dir+"/main.go", "lookup")},
		Condition: "ctx.(*context.cancelCtx).cause == nil",
		Capture:   fleet.DefaultCapture,
	})
	if err := syscall.Kill(p.Pid, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case h := <-tgt.Hits():
		if h.Fault == nil {
			t.Fatalf("a hit where the condition cannot be decided: %+v", h.Hit)
		}
		if h.Fault.Code != fleet.CodeBadCondition || !strings.Contains(h.Fault.Message, "not captured") {
			t.Errorf("fault %v, want a bad condition that reads memory not captured", h.Fault)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no hit and no fault in 60s")
	}
}
