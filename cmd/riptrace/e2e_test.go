package main_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/internal/testsupport"
	"github.com/riptrace/riptrace/source/sourcetest"
)

// itemIDs are the IDs of the loop target's items, which process gets in turn:
// call n gets itemIDs[n%3].
var itemIDs = []string{"book", "lamp", "pen"}

// TestEndToEnd traces one line across three processes on two hosts and checks
// every hit, the global order, and that the fleet returns to idle afterwards.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	src := loopSource(t)
	processLine := agenttest.MarkerLine(t, src, "process")
	loopLine := agenttest.MarkerLine(t, src, "loop")

	url := startServer(t)
	names := []string{"loop-a", "loop-b", "loop-c"}
	targets := make(map[string]*agenttest.Proc)
	for _, name := range names {
		targets[name] = startTarget(t, name)
	}
	startAgent(t, url, "host-a", "loop-a", "loop-b")
	startAgent(t, url, "host-b", "loop-c")
	hostOf := map[*agenttest.Proc]string{targets["loop-a"]: "host-a", targets["loop-b"]: "host-a", targets["loop-c"]: "host-b"}
	byPid := make(map[int]string)
	for name, p := range targets {
		byPid[p.Pid] = name
	}

	// Each agent lists its own processes, detached: attaching is on demand.
	awaitProcesses(t, url, hostOf, func(p *fleet.Process) error {
		if name := exeName(byPid[p.Pid]); filepath.Base(p.Exe) != name {
			return fmt.Errorf("exe %s, want one named %s", p.Exe, name)
		}
		return detached(p)
	})

	// A first tracepoint, reporting one hit per second per process, keeps
	// every target attached while the run under test traces another line.
	// Without it, that run's first 30 to 130 hits would come from only some
	// of the targets: an agent attaches to its processes one after another,
	// each attach reading a binary's debug info, while the processes already
	// attached hit 200 times a second. With it, all three report within the
	// first few hits.
	holder := start(t, "trace", "--nats", url, "--json", "--rate", "1", fmt.Sprintf("%s:%d", src, loopLine))
	holder.await(t, stateTimeout, "hits from every target", func(stdout, _ string) bool {
		pids := pidsOf(decodeHits(t, stdout))
		for pid := range pids {
			if byPid[pid] == "" {
				t.Fatalf("riptrace trace reported a hit from pid %d, which is none of the targets %v", pid, byPid)
			}
		}
		return len(pids) == len(targets)
	})
	holderID := tracepointID(t, holder.Stderr())
	for _, h := range decodeHits(t, holder.Stdout()) {
		if h.Function != "main.main" || h.Line != loopLine {
			t.Errorf("hit of the tracepoint at @trace(loop) is in %s line %d, want main.main line %d", h.Function, h.Line, loopLine)
		}
	}

	// The run under test: @trace(process), unthrottled, until it has
	// printed 30 hits and hits from every target, then Ctrl-C. The agents
	// install the tracepoint in one process after another, and on a loaded
	// machine the first 30 hits can all come from those reached first:
	// stopping at a count (--count, tested elsewhere) would make this test
	// depend on that race.
	tr := start(t, "trace", "--nats", url, "--json", "--rate", "0", fmt.Sprintf("%s:%d", src, processLine))
	var (
		parsed int // bytes of stdout decoded so far
		seen   []fleet.Hit
	)
	tr.await(t, stateTimeout, "30 hits and hits from every target", func(stdout, _ string) bool {
		if end := strings.LastIndexByte(stdout, '\n') + 1; end > parsed {
			seen = append(seen, decodeHits(t, stdout[parsed:end])...)
			parsed = end
		}
		return len(seen) >= 30 && len(pidsOf(seen)) == len(targets)
	})
	tr.signal(t, os.Interrupt)
	if code := tr.exitCode(t, stopTimeout); code != 0 {
		t.Fatalf("riptrace trace after Ctrl-C: exit status %d, want 0\n%s", code, tr.Stderr())
	}
	id := tracepointID(t, tr.Stderr())
	if id == holderID {
		t.Fatalf("two riptrace trace runs declared the same tracepoint id %s", id)
	}
	r := result{stdout: tr.Stdout(), stderr: tr.Stderr()}
	placed := decodePlaced(t, r.stdout)
	hits := decodeHits(t, r.stdout)
	if len(hits) < 30 {
		t.Fatalf("riptrace trace printed %d hits, want 30 or more\n%s", len(hits), r.stderr)
	}
	var (
		lastOrder uint64
		lastTime  time.Time
	)
	lastN := make(map[int]int)
	for i, h := range hits {
		for _, problem := range checkProcessHit(&h, processLine) {
			t.Errorf("hit %d (seq %d, pid %d): %s", i+1, h.Seq, h.Pid, problem)
		}
		if h.Tracepoint != id {
			t.Errorf("hit %d: tracepoint %q, want %q", i+1, h.Tracepoint, id)
		}
		name := byPid[h.Pid]
		if name == "" {
			t.Errorf("hit %d: pid %d is none of the targets %v", i+1, h.Pid, byPid)
			continue
		}
		if want := hostOf[targets[name]]; h.Host != want || h.Process.Exe != exeName(name) {
			t.Errorf("hit %d: from %s %s[%d], want host %s, exe %s", i+1, h.Host, h.Process.Exe, h.Pid, want, exeName(name))
		}
		// The timeline's order: each hit after the one before it, by
		// the time it ran, unless it came late and says so.
		if p := placed[i]; i > 0 && (p.Order <= lastOrder || !p.Late && p.CoordinatedTime.Before(lastTime)) {
			t.Errorf("hit %d: order %d at %v (late %v) after order %d at %v: out of the timeline's order", i+1, p.Order, p.CoordinatedTime, p.Late, lastOrder, lastTime)
		}
		if !placed[i].Late {
			lastTime = placed[i].CoordinatedTime
		}
		lastOrder = placed[i].Order
		// The global order agrees with each process's own order.
		if n, err := strconv.Atoi(valueOf(h.Args, "n")); err == nil {
			if last, ok := lastN[h.Pid]; ok && n <= last {
				t.Errorf("hit %d: pid %d call n=%d comes after its call n=%d", i+1, h.Pid, n, last)
			}
			lastN[h.Pid] = n
		}
	}
	for name, p := range targets {
		if pidsOf(hits)[p.Pid] == 0 {
			t.Errorf("no hit from %s (pid %d) among %d hits: hits per pid %v", name, p.Pid, len(hits), pidsOf(hits))
		}
	}
	if t.Failed() {
		t.Logf("first hit: %s", strings.SplitN(r.stdout, "\n", 2)[0])
	}

	// Its tracepoint is gone from every process; the first one remains.
	awaitProcesses(t, url, hostOf, func(p *fleet.Process) error {
		if !p.Attached || !slices.Equal(p.Tracepoints, []string{holderID}) {
			return fmt.Errorf("attached=%v with tracepoints %v, want attached with only %s", p.Attached, p.Tracepoints, holderID)
		}
		return nil
	})

	// Ctrl-C stops the first run; with no tracepoint left every agent
	// detaches, and nothing stays declared.
	holder.signal(t, os.Interrupt)
	if code := holder.exitCode(t, stopTimeout); code != 0 {
		t.Errorf("riptrace trace after Ctrl-C: exit status %d, want 0", code)
	}
	awaitProcesses(t, url, hostOf, detached)
	awaitNoTracepoints(t, url)

	// The targets ran on through all of it.
	awaitProgress(t, targets["loop-a"], targets["loop-b"], targets["loop-c"])
}

// checkProcessHit returns what is wrong with a hit at @trace(process) of the
// loop target.
func checkProcessHit(h *fleet.Hit, line int) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if h.Goroutine <= 0 {
		bad("goroutine %d, want > 0", h.Goroutine)
	}
	if h.Function != "main.process" || !strings.HasSuffix(h.File, "/loop/main.go") || h.Line != line {
		bad("at %s %s:%d, want main.process .../loop/main.go:%d", h.Function, h.File, h.Line, line)
	}
	if h.ServerTime.IsZero() || h.Time == 0 {
		bad("serverTime %v, time %d: want both set", h.ServerTime, h.Time)
	}
	if len(h.Errors) > 0 {
		bad("capture errors %q", h.Errors)
	}

	// Arguments: the pointer it is followed, so the Item's fields are its
	// children, and they belong to the same call as n.
	it := varNamed(h.Args, "it")
	n, err := strconv.Atoi(valueOf(h.Args, "n"))
	switch {
	case it == nil:
		bad("no argument it in %v", names(h.Args))
	case err != nil:
		bad("argument n is %q, want a number", valueOf(h.Args, "n"))
	default:
		want := itemIDs[n%len(itemIDs)]
		if got := valueOf(it.Children, "ID"); got != strconv.Quote(want) {
			bad("it.ID is %q (children %v), want %q for n=%d", got, names(it.Children), strconv.Quote(want), n)
		}
		// Locals are there, and agree with the arguments.
		if got, want := valueOf(h.Locals, "label"), strconv.Quote(fmt.Sprintf("%s#%d", want, n)); got != want {
			bad("local label is %q (locals %v), want %s", got, names(h.Locals), want)
		}
	}

	switch {
	case len(h.Stack) < 2:
		bad("stack %v, want main.process called by main.main", h.Stack)
	case h.Stack[0].Function != "main.process" || h.Stack[0].Line != line || h.Stack[1].Function != "main.main":
		bad("stack starts %s:%d, %s; want main.process:%d, main.main", h.Stack[0].Function, h.Stack[0].Line, h.Stack[1].Function, line)
	}
	return problems
}

// valueOf returns the value of the variable called name in vs, or "".
func valueOf(vs []fleet.Variable, name string) string {
	if v := varNamed(vs, name); v != nil {
		return v.Value
	}
	return ""
}

func names(vs []fleet.Variable) []string {
	var ns []string
	for _, v := range vs {
		ns = append(ns, v.Name)
	}
	return ns
}

// TestTraceBadInput checks that every mistake a user can make with trace is
// reported clearly, and that none of them leaves an agent stuck.
func TestTraceBadInput(t *testing.T) {
	t.Parallel()
	src := loopSource(t)
	processLoc := fmt.Sprintf("%s:%d", src, agenttest.MarkerLine(t, src, "process"))
	url := startServer(t)
	target := startTarget(t, "bad-loop")
	agent := startAgent(t, url, "bad-host", "bad-loop")
	where := map[*agenttest.Proc]string{target: "bad-host"}
	awaitProcesses(t, url, where, detached)

	ok := t.Run("group", func(t *testing.T) {
		// Mistakes on the command line: exit status 2 before anything is
		// declared.
		t.Run("usage", func(t *testing.T) {
			t.Parallel()
			for _, tc := range []struct {
				args []string
				want []string // in stderr
			}{
				{nil, []string{"Usage: riptrace trace", "FILE:LINE"}},
				{[]string{"main.go"}, []string{`"main.go"`, "FILE:LINE"}},
				{[]string{"main.go:x"}, []string{`"main.go:x"`, "line"}},
				{[]string{"main.go:0"}, []string{`"main.go:0"`, "line"}},
				{[]string{"main.go:1", "other.go:2"}, []string{"Usage: riptrace trace", "FILE:LINE"}},
				{[]string{"--count", "many", "main.go:1"}, []string{"-count", "Usage: riptrace trace"}},
			} {
				r := run(t, cmdTimeout, append([]string{"trace", "--nats", url}, tc.args...)...)
				if r.code != 2 {
					t.Errorf("riptrace trace %q: exit status %d, want 2\n%s", tc.args, r.code, r.stderr)
				}
				for _, w := range tc.want {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("riptrace trace %q: stderr does not mention %q:\n%s", tc.args, w, r.stderr)
					}
				}
			}
		})

		// A condition that does not parse is refused at once.
		t.Run("condition syntax", func(t *testing.T) {
			t.Parallel()
			r := run(t, cmdTimeout, "trace", "--nats", url, "--cond", "n >", processLoc)
			if r.code == 0 || !strings.Contains(r.stderr, `condition "n >"`) {
				t.Errorf("riptrace trace --cond 'n >': exit status %d, want non-zero and a message about the condition:\n%s", r.code, r.stderr)
			}
			if strings.Contains(r.stderr, "riptrace: tracing") {
				t.Errorf("riptrace trace --cond 'n >' declared a tracepoint:\n%s", r.stderr)
			}
		})

		// Mistakes only the agent can see come back as the process's
		// status; once every process has refused, trace exits 1 with the
		// reasons, unless --wait.
		for _, tc := range []struct {
			name string
			args []string
			want []string // in the error status line and the final error
			code int
			// interrupt: Ctrl-C once the status is seen. A trace that
			// waits would otherwise end only with its --for, a guess at
			// how soon the agent answers.
			interrupt bool
		}{
			{
				name: "file no program has",
				args: []string{"--for", "1m", "nosuch/file.go:10"},
				want: []string{"nosuch/file.go"},
				code: 1,
			},
			{
				name: "file with no namesake",
				args: []string{"--for", "1m", "nosuch/nosuchfile.go:10"},
				want: []string{"nosuch/nosuchfile.go", "check the path"},
				code: 1,
			},
			{
				name: "line without code",
				args: []string{"--for", "1m", "--count", "1", fmt.Sprintf("%s:%d", src, agenttest.MarkerLine(t, src, "nocode"))},
				want: []string{"no code", "pick a line"},
				code: 1,
			},
			{
				name: "condition that cannot be evaluated",
				args: []string{"--for", "1m", "--cond", "nosuch > 1", processLoc},
				want: []string{`condition "nosuch > 1"`, "the tracepoint was removed"},
				code: 1,
			},
			{
				name:      "waiting",
				args:      []string{"--for", "1m", "--wait", "nosuch/file.go:10"},
				want:      []string{"nosuch/file.go"},
				code:      0,
				interrupt: true,
			},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				tr := start(t, append([]string{"trace", "--nats", url, "--json"}, tc.args...)...)
				var status string
				tr.await(t, stateTimeout, "error status for pid "+strconv.Itoa(target.Pid), func(_, stderr string) bool {
					status = statusLine(stderr, target.Pid, fleet.StateError)
					return status != ""
				})
				for _, w := range tc.want {
					if !strings.Contains(status, w) {
						t.Errorf("status does not mention %q: %s", w, status)
					}
				}
				if tc.interrupt {
					// Still running after every process refused: that is
					// what --wait is for. Had it exited 1, the status
					// below says so.
					tr.Cmd.Process.Signal(os.Interrupt) // gone already: the exit status tells
				}
				if code := tr.exitCode(t, stateTimeout); code != tc.code {
					t.Errorf("exit status %d, want %d\n%s", code, tc.code, tr.Stderr())
				}
				if tc.code != 0 {
					last := tr.Stderr()[strings.LastIndex(strings.TrimSpace(tr.Stderr()), "\n")+1:]
					for _, w := range append(tc.want, "no process can produce a hit", "--wait") {
						if !strings.Contains(last, w) {
							t.Errorf("the last line does not mention %q: %s", w, last)
						}
					}
				}
				if out := tr.Stdout(); out != "" {
					t.Errorf("printed hits, want none:\n%s", out)
				}
			})
		}
	})
	if !ok {
		return
	}

	// The agent recovered from all of it: it is detached, nothing is
	// declared, the target runs on, and a trace, by path suffix this time,
	// works.
	awaitProcesses(t, url, where, detached)
	awaitNoTracepoints(t, url)
	awaitProgress(t, target)
	r := run(t, cmdTimeout, "trace", "--nats", url, "--json", "--count", "5", "loop/main.go:"+strconv.Itoa(agenttest.MarkerLine(t, src, "process")))
	if r.code != 0 {
		t.Fatalf("riptrace trace after the bad ones: exit status %d, want 0\n%s", r.code, r.stderr)
	}
	hits := decodeHits(t, r.stdout)
	if len(hits) != 5 {
		t.Errorf("riptrace trace --count 5 printed %d hits, want 5", len(hits))
	}
	for i, h := range hits {
		if h.Pid != target.Pid || h.Host != "bad-host" || h.Function != "main.process" {
			t.Errorf("hit %d: %s pid %d in %s, want bad-host pid %d in main.process", i+1, h.Host, h.Pid, h.Function, target.Pid)
		}
	}
	select {
	case <-agent.Exited():
		t.Errorf("the agent exited: %v", agent.Wait(0))
	default:
	}
}

// TestHostsJSON checks what `riptrace hosts` says about an agent and its
// processes, and that an agent stopped with SIGTERM withdraws itself.
func TestHostsJSON(t *testing.T) {
	t.Parallel()
	url := startServer(t)

	r := run(t, cmdTimeout, "hosts", "--nats", url, "--json")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("riptrace hosts --json with no agent: exit status %d, output %q; want 0 and []\n%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, cmdTimeout, "hosts", "--nats", url)
	if r.code != 0 || !strings.Contains(r.stdout, "no agents on "+url) {
		t.Errorf("riptrace hosts with no agent: exit status %d, output %q; want 0 and a hint that no agent runs", r.code, r.stdout)
	}

	target := startTarget(t, "hosts-loop", "-every", "10ms")
	agent := startAgent(t, url, "hosts-test", "hosts-loop")
	var host *fleet.HostEntry
	var proc *fleet.Process
	testsupport.CheckFor(t, stateTimeout, 100*time.Millisecond, func() error {
		hosts, err := listHosts(t, url)
		if err != nil {
			return err
		}
		if proc, err = findProcess(hosts, "hosts-test", target.Pid); err != nil {
			return err
		}
		host, _ = findHost(hosts, "hosts-test")
		return nil
	})

	info := host.Profile.Host
	if info.Name != "hosts-test" || info.OS != runtime.GOOS || info.Arch != runtime.GOARCH || info.CPUs != runtime.NumCPU() ||
		info.Kernel == "" || info.AgentVersion != testVersion || !slices.Contains(info.Backends, "delve") || info.Started.IsZero() {
		t.Errorf("host info %+v, want name hosts-test, %s/%s, %d CPUs, a kernel, agent %s, backend delve, a start time",
			info, runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), testVersion)
	}
	if host.LastSeen.IsZero() {
		t.Errorf("host hosts-test has no lastSeen")
	}
	// The agent's --processes leaves out every other Go process here, this
	// test's own included.
	if n := len(host.Profile.Processes); n != 1 {
		t.Errorf("host hosts-test lists %d processes, want only hosts-loop: %+v", n, host.Profile.Processes)
	}
	exe, err := filepath.EvalSymlinks(target.Cmd.Path)
	if err != nil {
		t.Fatal(err)
	}
	want := fleet.Process{
		Pid:         target.Pid,
		Exe:         exe,
		Cmdline:     []string{target.Cmd.Path, "-every", "10ms"},
		Module:      "github.com/riptrace/riptrace",
		MainPackage: "github.com/riptrace/riptrace/agent/testdata/targets/loop",
		GoVersion:   runtime.Version(),
	}
	got := *proc
	// A build without vcs.revision names its build, so that a client can
	// find its revision.
	if got.Revision == "" && got.Build == "" {
		t.Errorf("riptrace hosts --json lists a process without a revision or a build ID: %+v", got)
	}
	// Whatever VCS information the build stamped (none with
	// -buildvcs=false) and whether this test runs in a container are not
	// this test's business.
	got.Revision, got.Modified, got.VCSTime, got.ContainerID, got.Build = "", false, "", "", ""
	if !reflect.DeepEqual(got, want) {
		t.Errorf("riptrace hosts --json lists\n%+v\nwant\n%+v", got, want)
	}

	r = run(t, cmdTimeout, "hosts", "--nats", url)
	if r.code != 0 {
		t.Errorf("riptrace hosts: exit status %d\n%s", r.code, r.stderr)
	}
	for _, w := range []string{"hosts-test", testVersion, strconv.Itoa(target.Pid), "hosts-loop", want.MainPackage, runtime.Version()} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("riptrace hosts does not mention %q:\n%s", w, r.stdout)
		}
	}
	// Columns under headers, backends in words, a process row that reads
	// across, and a legend for the two columns that need one.
	wantRow := func(fields ...string) {
		t.Helper()
		for line := range strings.Lines(r.stdout) {
			if slices.Equal(strings.Fields(line)[:min(len(fields), len(strings.Fields(line)))], fields) {
				return
			}
		}
		t.Errorf("riptrace hosts has no row starting %q:\n%s", fields, r.stdout)
	}
	wantRow("HOST", "STATE", "SYSTEM", "AGENT", "CLOCK")
	wantRow("hosts-test", "live", runtime.GOOS+"/"+runtime.GOARCH+",")
	wantRow("HOST", "PID", "PROGRAM", "MAIN", "PACKAGE", "REVISION", "GO", "ATTACHED")
	wantRow("hosts-test", strconv.Itoa(target.Pid), filepath.Base(exe), want.MainPackage)
	if strings.Contains(r.stdout, "[") || !strings.Contains(r.stdout, "with backend") {
		t.Errorf("riptrace hosts prints the backends as a Go slice, or not at all:\n%s", r.stdout)
	}
	for _, w := range []string{"REVISION is the commit", "ATTACHED says"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("riptrace hosts does not explain its columns (%q):\n%s", w, r.stdout)
		}
	}
	if r := run(t, cmdTimeout, "version"); r.code != 0 || r.stdout != "riptrace "+testVersion+"\n" {
		t.Errorf("riptrace version: exit status %d, output %q; want 0 and %q", r.code, r.stdout, "riptrace "+testVersion+"\n")
	}

	// SIGTERM: the agent exits cleanly and withdraws its heartbeat, so the
	// host is not merely shown as gone but no longer listed.
	agent.signal(t, syscall.SIGTERM)
	if code := agent.exitCode(t, stopTimeout); code != 0 {
		t.Errorf("agent after SIGTERM: exit status %d, want 0", code)
	}
	testsupport.CheckFor(t, stateTimeout, 100*time.Millisecond, func() error {
		hosts, err := listHosts(t, url)
		if err != nil {
			return err
		}
		if len(hosts) > 0 {
			return fmt.Errorf("riptrace hosts --json lists %+v after the agent stopped, want nothing", hosts)
		}
		return nil
	})
	if r := run(t, cmdTimeout, "hosts", "--nats", url); !strings.Contains(r.stdout, "no agents on") {
		t.Errorf("riptrace hosts after the agent stopped: %q, want the no-agents hint", r.stdout)
	}
	awaitProgress(t, target)
}

// TestAgentSIGTERMLeavesTargetRunning stops an agent while a tracepoint in
// its process hits continuously: the agent must remove its breakpoints (a
// stray int3, or a stray SIGTRAP, kills a Go program) and detach before it
// exits 0, and withdraw its status. A new agent then picks the still-declared
// tracepoint up again.
func TestAgentSIGTERMLeavesTargetRunning(t *testing.T) {
	t.Parallel()
	testAgentStopLeavesTargetRunning(t, syscall.SIGTERM)
}

// TestAgentSIGKILLLeavesTargetRunning is the same for an agent that gets no
// chance to clean up: its Delve worker sees the agent gone, removes the
// breakpoints and detaches by itself.
func TestAgentSIGKILLLeavesTargetRunning(t *testing.T) {
	t.Parallel()
	testAgentStopLeavesTargetRunning(t, syscall.SIGKILL)
}

func testAgentStopLeavesTargetRunning(t *testing.T, sig syscall.Signal) {
	src := loopSource(t)
	processLine := agenttest.MarkerLine(t, src, "process")
	url := startServer(t)
	// A hot line: the target calls process without pause, so it is stopped
	// at the breakpoint, or on its way there, most of the time, the way a
	// busy service is.
	// Names of its own: the SIGTERM and SIGKILL tests run side by side,
	// and two agents must never manage one process.
	exe, host := fmt.Sprintf("stop%d-loop", sig), fmt.Sprintf("stop%d-host", sig)
	target := startTarget(t, exe, "-every", "0")
	agent := startAgent(t, url, host, exe)
	where := map[*agenttest.Proc]string{target: host}
	awaitProcesses(t, url, where, detached)

	tr := start(t, "trace", "--nats", url, "--json", "--rate", "0", fmt.Sprintf("%s:%d", src, processLine))
	tr.await(t, stateTimeout, "20 hits", func(stdout, _ string) bool {
		return len(decodeHits(t, stdout)) >= 20
	})

	agent.signal(t, sig)
	if sig == syscall.SIGTERM {
		if code := agent.exitCode(t, stopTimeout); code != 0 {
			t.Errorf("agent after SIGTERM: exit status %d, want 0", code)
		}
	} else {
		select {
		case <-agent.Exited():
		case <-time.After(stopTimeout):
			t.Fatalf("agent still running %v after %v", stopTimeout, sig)
		}
	}
	// Two new ALIVE lines: the target runs, and keeps running.
	awaitProgress(t, target)
	awaitProgress(t, target)
	if strings.Contains(target.Stderr(), "SIGTRAP") {
		t.Errorf("target stderr mentions SIGTRAP:\n%s", target.Stderr())
	}
	if sig == syscall.SIGTERM {
		// The agent withdrew its status; the trace says whose and why.
		said := fmt.Sprintf("[%d]: done: the agent of host %s stopped", target.Pid, host)
		tr.await(t, stateTimeout, said, func(_, stderr string) bool {
			return strings.Contains(stderr, said)
		})
	}

	if sig == syscall.SIGKILL {
		// The killed agent's entries still say installed: once its
		// heartbeat is three periods old, the trace says it is gone.
		said := "host " + host + ": its agent is gone"
		tr.await(t, 2*stateTimeout, said, func(_, stderr string) bool {
			return strings.Contains(stderr, said)
		})
	}

	// The tracepoint is still declared: a new agent for the host installs it.
	restarted := time.Now()
	startAgent(t, url, host, exe)
	tr.await(t, stateTimeout, "a hit taken by the new agent", func(stdout, _ string) bool {
		hits := decodeHits(t, stdout)
		return len(hits) > 0 && hits[len(hits)-1].Time > restarted.UnixNano()
	})
	if sig == syscall.SIGKILL {
		said := "host " + host + ": its agent is back"
		tr.await(t, stateTimeout, said, func(_, stderr string) bool {
			return strings.Contains(stderr, said)
		})
	}
	hits := decodeHits(t, tr.Stdout())
	for i, h := range hits {
		if h.Pid != target.Pid || h.Host != host || h.Line != processLine {
			t.Errorf("hit %d: %s pid %d line %d, want %s pid %d line %d", i+1, h.Host, h.Pid, h.Line, host, target.Pid, processLine)
		}
		// The hits of a batch share its seq, each with its part.
		if prev := hits[max(i-1, 0)]; i > 0 && (h.Seq < prev.Seq || h.Seq == prev.Seq && h.Part <= prev.Part) {
			t.Errorf("hit %d: #%s after #%s, want strictly increasing", i+1, h.Number(), prev.Number())
		}
	}

	tr.signal(t, os.Interrupt)
	if code := tr.exitCode(t, stopTimeout); code != 0 {
		t.Errorf("riptrace trace after Ctrl-C: exit status %d, want 0", code)
	}
	awaitProcesses(t, url, where, detached)
	awaitNoTracepoints(t, url)
	awaitProgress(t, target)
}

// TestTraceInterfaceLocal checks that an interface-typed local is captured,
// in a production build of the target (where the compiler keeps it in
// registers) as in a debug build.
func TestTraceInterfaceLocal(t *testing.T) {
	t.Parallel()
	src := loopSource(t)
	processLine := agenttest.MarkerLine(t, src, "process")
	url := startServer(t)
	targets := map[string]*agenttest.Proc{
		"iface-opt":   startTarget(t, "iface-opt"),
		"iface-noopt": startTargetBuild(t, agenttest.BuildTarget(t, loopDir, agenttest.NoOpt), "iface-noopt"),
	}
	startAgent(t, url, "iface-host", "iface-opt", "iface-noopt")
	awaitProcesses(t, url, map[*agenttest.Proc]string{targets["iface-opt"]: "iface-host", targets["iface-noopt"]: "iface-host"}, detached)

	for name := range targets {
		t.Run(name, func(t *testing.T) {
			r := run(t, cmdTimeout, "trace", "--nats", url, "--json", "--count", "10", "--processes", exeName(name), fmt.Sprintf("%s:%d", src, processLine))
			if r.code != 0 {
				t.Fatalf("riptrace trace: exit status %d, want 0\n%s", r.code, r.stderr)
			}
			for i, h := range decodeHits(t, r.stdout) {
				// process sets note to label on a rush order, to units
				// otherwise.
				var want string
				switch rush := valueOf(h.Locals, "rush"); rush {
				case "true":
					want = valueOf(h.Locals, "label")
				case "false":
					want = valueOf(h.Locals, "units")
				default:
					t.Fatalf("hit %d: local rush is %q, want true or false", i+1, rush)
				}
				note := varNamed(h.Locals, "note")
				switch {
				case note == nil:
					t.Errorf("hit %d: no local note in %v", i+1, names(h.Locals))
				case note.Unreadable != "" || want == "" || !strings.Contains(note.Value, want):
					t.Errorf("hit %d: local note is %q (unreadable: %q), want the interface holding %s", i+1, note.Value, note.Unreadable, want)
				}
			}
		})
	}
}

// TestMakeDemo runs what a newcomer runs first.
func TestMakeDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("make demo builds and runs the whole system")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "demo")
	cmd.Dir = "../.."
	cmd.WaitDelay = stopTimeout
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("make demo did not finish within 5m:\n%s", out)
	}
	if err != nil {
		t.Fatalf("make demo: %v\n%s", err, out)
	}
	for _, w := range []string{"timeline: 12 hits", "main.charge", "main.priceOrder", "main.checkout", "still serving", "✓ checkout count == 4", "PASS checkout in"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("make demo output does not mention %q", w)
		}
	}
	// The timeline is in the order things ran, request by request: each
	// order is priced, then charged, then the gateway answers. Two hits of
	// different hosts closer than their clocks' bounds may be shown the
	// other way round, but then the one shown second says it is uncertain
	// (or late): never inverted silently.
	checkDemoOrder(t, string(out))
	if t.Failed() {
		t.Logf("make demo output:\n%s", out)
	}
}

// TestCredentials: against a NATS server that wants a token, the commands
// work with --token and say what is wrong without it.
func TestCredentials(t *testing.T) {
	t.Parallel()
	url := tokenNATS(t)
	if r := run(t, cmdTimeout, "hosts", "--nats", url); r.code == 0 || !strings.Contains(r.stderr, "Authorization Violation") {
		t.Errorf("hosts without a token: exit %d, stderr %q; want a failure naming the authorization violation", r.code, r.stderr)
	}
	if r := run(t, cmdTimeout, "hosts", "--nats", url, "--token", "s3cret"); r.code != 0 {
		t.Errorf("hosts with the token: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := run(t, cmdTimeout, "hosts", "--nats", url, "--tls-cert", "x.pem"); r.code != 2 || !strings.Contains(r.stderr, "--tls-key") {
		t.Errorf("--tls-cert alone: exit %d, stderr %q; want a usage error", r.code, r.stderr)
	}
}

// TestAgentMetrics: riptrace agent --metrics serves Prometheus metrics that
// count the hits published per tracepoint and the attached processes.
func TestAgentMetrics(t *testing.T) {
	t.Parallel()
	src := loopSource(t)
	url := startServer(t)
	target := startTarget(t, "metrics-loop")
	agent := start(t, "agent", "--nats", url, "--host", "metrics-host", "--processes", exeName("metrics-loop"), "--metrics", "127.0.0.1:0")
	var addr string
	agent.await(t, stateTimeout, "the metrics address", func(_, stderr string) bool {
		if m := regexp.MustCompile(`msg="serving metrics" addr=(\S+)`).FindStringSubmatch(stderr); m != nil {
			addr = m[1]
			return true
		}
		return false
	})
	awaitProcesses(t, url, map[*agenttest.Proc]string{target: "metrics-host"}, detached)
	r := run(t, cmdTimeout, "trace", "--nats", url, "--json", "--count", "5", fmt.Sprintf("%s:%d", src, agenttest.MarkerLine(t, src, "process")))
	if r.code != 0 {
		t.Fatalf("trace: exit %d\n%s", r.code, r.stderr)
	}
	id := decodeHits(t, r.stdout)[0].Tracepoint
	testsupport.CheckFor(t, stateTimeout, 100*time.Millisecond, func() error {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		m := regexp.MustCompile(`riptrace_hits_total\{tracepoint="` + id + `"\} (\d+)`).FindSubmatch(body)
		if m == nil {
			return fmt.Errorf("no riptrace_hits_total for %s in:\n%s", id, body)
		}
		if n, _ := strconv.Atoi(string(m[1])); n < 5 {
			return fmt.Errorf("riptrace_hits_total = %d, want at least 5", n)
		}
		for _, name := range []string{"riptrace_attached_processes", "go_gc_duration_seconds_count", "go_goroutines", "process_cpu_seconds_total", "riptrace_ebpf_trap_seconds"} {
			if !regexp.MustCompile(`(?m)^` + name + ` `).Match(body) {
				return fmt.Errorf("no %s in:\n%s", name, body)
			}
		}
		return nil
	})
}

// TestTraceNoFileSummary checks that the processes of a fleet-wide trace
// that lack the file are counted in one line (listed with -v), and that
// trace exits 1 once all of them have refused.
func TestTraceNoFileSummary(t *testing.T) {
	t.Parallel()
	url := startServer(t)
	a := startTarget(t, "nofile-loop")
	b := startTarget(t, "nofile-loop")
	startAgent(t, url, "nofile-host", "nofile-loop")
	awaitProcesses(t, url, map[*agenttest.Proc]string{a: "nofile-host", b: "nofile-host"}, detached)

	r := run(t, cmdTimeout, "trace", "--nats", url, "--count", "1", "nosuch/file.go:10")
	if r.code != 1 {
		t.Errorf("exit status %d, want 1\n%s", r.code, r.stderr)
	}
	if n := strings.Count(r.stderr, "2 processes not traced: no source file of theirs ends in nosuch/file.go (-v lists them)"); n != 1 {
		t.Errorf("the summary line appears %d times, want once:\n%s", n, r.stderr)
	}
	if strings.Contains(r.stderr, "error: no source file") {
		t.Errorf("a process's own error line was printed without -v:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "2 processes have no source file ending in nosuch/file.go. Fix the location") {
		t.Errorf("the final error does not count the processes:\n%s", r.stderr)
	}

	r = run(t, cmdTimeout, "trace", "--nats", url, "-v", "--count", "1", "nosuch/file.go:10")
	for _, p := range []*agenttest.Proc{a, b} {
		if statusLine(r.stderr, p.Pid, fleet.StateError) == "" {
			t.Errorf("-v: no error line for pid %d:\n%s", p.Pid, r.stderr)
		}
	}
}

// TestServerRefusesTakenDataAndPort starts a second server on the data
// directory of a running one, and another on its port: the first is refused
// naming the owner's pid, the second with the bind error, and the running
// server serves on.
func TestServerRefusesTakenDataAndPort(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	first := start(t, "server", "--listen", "127.0.0.1:-1", "--data", data)
	var url string
	first.await(t, cmdTimeout, "ready line", func(stdout, _ string) bool {
		if m := serverReady.FindStringSubmatch(stdout); m != nil {
			url = m[1]
		}
		return url != ""
	})

	r := run(t, cmdTimeout, "server", "--listen", "127.0.0.1:-1", "--data", data)
	want := fmt.Sprintf("the data directory %s is in use by pid %d", data, first.Cmd.Process.Pid)
	if r.code == 0 || !strings.Contains(r.stderr, want) {
		t.Errorf("a second server on %s: exit status %d, stderr %q; want it refused with %q", data, r.code, r.stderr, want)
	}

	r = run(t, cmdTimeout, "server", "--listen", strings.TrimPrefix(url, "nats://"), "--data", t.TempDir())
	if r.code == 0 || !strings.Contains(r.stderr, "address already in use") {
		t.Errorf("a server on the port of another: exit status %d, stderr %q; want it refused with the bind error", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, "did not accept connections") {
		t.Errorf("a server on the port of another waited for nats-server to start, then guessed: %q; want the bind error before it starts", r.stderr)
	}

	if r := run(t, cmdTimeout, "hosts", "--nats", url); r.code != 0 {
		t.Errorf("riptrace hosts on the first server after the refusals: exit status %d\n%s", r.code, r.stderr)
	}
}

// TestTraceJSONCheckoutLine traces a line of a checkout one commit ahead of
// the running process, which has it MovedBy lines higher: each --json hit
// carries the line it ran at and, as the text form does, the checkout's.
func TestTraceJSONCheckoutLine(t *testing.T) {
	t.Parallel()
	repo, bin, _ := sourcetest.MovedLine(t, agenttest.BuildStamped)
	src := filepath.Join(repo, "main.go")
	localLine := agenttest.MarkerLine(t, src, "work")
	url := startServer(t)
	target := startTargetBuild(t, bin, "moved-json")
	startAgent(t, url, "moved-json-host", "moved-json")
	awaitProcesses(t, url, map[*agenttest.Proc]string{target: "moved-json-host"}, detached)

	r := run(t, stateTimeout, "trace", "--nats", url, "--json", "--count", "1", fmt.Sprintf("%s:%d", src, localLine))
	hits := decodeTraced(t, r.stdout)
	if r.code != 0 || len(hits) != 1 {
		t.Fatalf("riptrace trace --json --count 1: exit status %d, %d hits; want 0 and 1\n%s", r.code, len(hits), r.stderr)
	}
	h := hits[0]
	if h.Line != localLine-sourcetest.MovedBy {
		t.Errorf("the hit ran at line %d, want commit A's %d", h.Line, localLine-sourcetest.MovedBy)
	}
	if h.Checkout == nil || h.Checkout.File != "main.go" || h.Checkout.Line != localLine {
		t.Errorf("the hit's checkout line is %+v, want main.go:%d", h.Checkout, localLine)
	}
}

// TestTraceChangedLineExits traces a line of a checkout that the running
// revision has with other code: the process refuses it, naming the
// revision, and as no other process can produce a hit, trace exits 1 with
// that reason.
func TestTraceChangedLineExits(t *testing.T) {
	t.Parallel()
	const main = `package main

import (
	"fmt"
	"os"
	"time"
)

//go:noinline
func work(n int) int {
	m := n * 3
	%s //@trace(work)
	return m
}

func main() {
	fmt.Printf("READY pid=%%d\n", os.Getpid())
	for n := 0; ; n++ {
		work(n)
		time.Sleep(5 * time.Millisecond)
	}
}
`
	repo := sourcetest.Init(t)
	sourcetest.Write(t, repo, "go.mod", "module example.com/changed\n\ngo 1.26\n")
	revA := sourcetest.Commit(t, repo, "A", map[string]string{"main.go": fmt.Sprintf(main, "m += n")})
	bin := filepath.Join(t.TempDir(), "changed")
	if err := agenttest.BuildStamped(repo, bin); err != nil {
		t.Fatalf("building commit A: %v", err)
	}
	sourcetest.Commit(t, repo, "B", map[string]string{"main.go": fmt.Sprintf(main, "m += 2 * n")})
	src := filepath.Join(repo, "main.go")
	url := startServer(t)
	target := startTargetBuild(t, bin, "changed-line")
	startAgent(t, url, "changed-host", "changed-line")
	awaitProcesses(t, url, map[*agenttest.Proc]string{target: "changed-host"}, detached)

	r := run(t, stateTimeout, "trace", "--nats", url, "--count", "1", fmt.Sprintf("%s:%d", src, agenttest.MarkerLine(t, src, "work")))
	if r.code != 1 {
		t.Errorf("exit status %d, want 1\n%s", r.code, r.stderr)
	}
	said := "not traced in revision " + fleet.ShortRevision(revA)
	if status := statusLine(r.stderr, target.Pid, fleet.StateError); !strings.Contains(status, said) {
		t.Errorf("the process's status %q does not say %q:\n%s", status, said, r.stderr)
	}
	last := r.stderr[strings.LastIndex(strings.TrimSpace(r.stderr), "\n")+1:]
	for _, w := range []string{"no process can produce a hit", said, "--wait"} {
		if !strings.Contains(last, w) {
			t.Errorf("the last line does not mention %q: %s", w, last)
		}
	}
}

// TestTraceFollowsNewRevisions declares a line of a checkout one commit
// ahead before any agent runs: no revision is known, so it goes out
// unmapped. When the agent reports a process of the older commit, the
// trace maps the line into it and declares it again: the hit comes from
// that commit's line, not from the checkout's line number.
func TestTraceFollowsNewRevisions(t *testing.T) {
	t.Parallel()
	repo, bin, revA := sourcetest.MovedLine(t, agenttest.BuildStamped)
	src := filepath.Join(repo, "main.go")
	localLine := agenttest.MarkerLine(t, src, "work")
	url := startServer(t)

	tr := start(t, "trace", "--nats", url, "--json", "--count", "1", "--wait", fmt.Sprintf("%s:%d", src, localLine))
	tr.await(t, cmdTimeout, "the tracing line", func(_, stderr string) bool {
		return strings.Contains(stderr, "riptrace: tracing ")
	})
	startTargetBuild(t, bin, "follow-revs")
	startAgent(t, url, "follow-host", "follow-revs")

	said := fmt.Sprintf("revision %s started in the fleet: tracing main.go:%d there", fleet.ShortRevision(revA), localLine-sourcetest.MovedBy)
	tr.await(t, stateTimeout, said, func(_, stderr string) bool {
		return strings.Contains(stderr, said)
	})
	if code := tr.exitCode(t, stateTimeout); code != 0 {
		t.Fatalf("riptrace trace --count 1: exit status %d, want 0\n%s", code, tr.Stderr())
	}
	hits := decodeTraced(t, tr.Stdout())
	if len(hits) != 1 || hits[0].Line != localLine-sourcetest.MovedBy {
		t.Fatalf("hits %+v, want one at commit A's line %d", hits, localLine-sourcetest.MovedBy)
	}
}

// checkDemoOrder checks the request blocks of make demo's timeline: each of
// the 4 requests has its 3 hits, and a pair shown out of the order they ran
// in is marked on the hit shown second.
func checkDemoOrder(t *testing.T, out string) {
	t.Helper()
	rank := map[string]int{"main.priceOrder": 0, "main.charge": 1, "main.checkout": 2}
	type entry struct {
		fn     string
		marked bool
	}
	for i := 1; i <= 4; i++ {
		head := fmt.Sprintf("── request ord-%04d ──", i)
		k := strings.Index(out, head)
		if k < 0 {
			t.Errorf("make demo timeline: no %q", head)
			continue
		}
		block := out[k+len(head):]
		if end := strings.Index(block, "── request"); end >= 0 {
			block = block[:end]
		} else if end := strings.Index(block, "==>"); end >= 0 {
			block = block[:end]
		}
		var entries []entry
		for line := range strings.Lines(block) {
			f := strings.Fields(line)
			switch {
			case len(f) > 0 && strings.HasPrefix(f[0], "#"):
				entries = append(entries, entry{fn: f[len(f)-1]})
			case len(entries) > 0 && len(f) > 0 && (f[0] == "uncertain:" || f[0] == "late:"):
				entries[len(entries)-1].marked = true
			}
		}
		if len(entries) != 3 {
			t.Errorf("request %d: %d hits in the timeline, want priceOrder, charge and checkout:%s", i, len(entries), block)
			continue
		}
		for a := range entries {
			for b := a + 1; b < len(entries); b++ {
				ra, oka := rank[entries[a].fn]
				rb, okb := rank[entries[b].fn]
				if !oka || !okb {
					t.Errorf("request %d: hits of %s and %s, want priceOrder, charge and checkout", i, entries[a].fn, entries[b].fn)
				} else if ra > rb && !entries[b].marked {
					t.Errorf("request %d: %s shown before %s, which ran first, with no mark of uncertainty:%s", i, entries[a].fn, entries[b].fn, block)
				}
			}
		}
	}
}
