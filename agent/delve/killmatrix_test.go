package delve_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/delve"
	"github.com/riptrace/riptrace/fleet"
)

const selfcheckDir = "../testdata/targets/selfcheck"

// miniAgentArg, as the test binary's first argument, makes it an agent of
// one target: a real Backend, run as a process of its own so that a test
// can SIGKILL it (see runMiniAgent).
const miniAgentArg = "riptrace-test-mini-agent"

// TestKillMatrix SIGKILLs the agent, the Delve worker and the watchdog, in
// every combination, at a random instant (and every other time at one when
// a thread of the target is in a ptrace stop) while a tracepoint hits a
// self-checking target (testdata/targets/selfcheck: a wrong result makes it
// exit, and it prints its progress ten times a second): the target must
// stay alive, right and running, never stopped. Hot is a line hit without
// pause (no stop budget, no rate limit), cool one hit 50 times a second.
//
// make test runs 2 kills of each combination with the backend's default
// mode; make kill-matrix runs RIPTRACE_KILL_MATRIX kills of each (20),
// in the modes of RIPTRACE_KILL_MATRIX_MODES (uprobe,int3), and logs the
// figures as survived/total. Only uprobe mode must survive them all: int3
// mode (Delve's breakpoints and a watchdog, the fallback where the kernel
// refuses uprobes) is measured, not held to it.
func TestKillMatrix(t *testing.T) {
	n := 2
	modes := []string{"uprobe"}
	if v := os.Getenv("RIPTRACE_KILL_MATRIX"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("RIPTRACE_KILL_MATRIX=%q: want a number of kills per combination", v)
		}
		modes = []string{"uprobe", "int3"}
		if v := os.Getenv("RIPTRACE_KILL_MATRIX_MODES"); v != "" {
			modes = strings.Split(v, ",")
		}
	} else if testing.Short() {
		t.Skip("short")
	}
	if mode, why := delve.New(io.Discard).Mode(); mode != "uprobe" {
		modes = slices.DeleteFunc(modes, func(m string) bool { return m == "uprobe" })
		if len(modes) == 0 {
			t.Skipf("this host has no uprobes for the Delve backend (%v)", why)
		}
	}
	bin := agenttest.BuildTarget(t, selfcheckDir)
	type result struct {
		survived, total int
		inStop          int // kills that came while a thread was in a ptrace stop
		why             []string
	}
	var mu sync.Mutex
	results := map[string]*result{}
	// Two trials at a time: each target's hot loop and its worker take a
	// CPU each.
	sem := make(chan struct{}, 2)
	t.Run("group", func(t *testing.T) {
		for _, mode := range modes {
			faults := [][]string{{"agent"}, {"worker"}, {"agent", "worker"}}
			if mode == "int3" {
				faults = append(faults, [][]string{{"watchdog"}, {"watchdog", "then", "worker"}, {"worker", "watchdog"}, {"agent", "worker", "watchdog"}}...)
			}
			for _, line := range []string{"hot", "cool"} {
				for _, fault := range faults {
					name := fmt.Sprintf("%s/%s/%s", mode, line, strings.Join(fault, "+"))
					mu.Lock()
					results[name] = &result{}
					mu.Unlock()
					for i := range n {
						t.Run(fmt.Sprintf("%s/%d", name, i), func(t *testing.T) {
							t.Parallel()
							sem <- struct{}{}
							defer func() { <-sem }()
							why, inStop := killTrial(t, bin, mode, line, fault, i%2 == 1)
							mu.Lock()
							r := results[name]
							r.total++
							if inStop {
								r.inStop++
							}
							if why == "" {
								r.survived++
							} else {
								r.why = append(r.why, why)
							}
							mu.Unlock()
							if why != "" && mode == "uprobe" {
								t.Errorf("the target did not survive: %s", why)
							}
						})
					}
				}
			}
		}
	})
	names := make([]string, 0, len(results))
	for name := range results {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		r := results[name]
		t.Logf("kill matrix %-34s survived %d/%d (%d kills during a stop) %s", name, r.survived, r.total, r.inStop, strings.Join(r.why, "; "))
	}
}

var aliveLine = regexp.MustCompile(`ALIVE hot=(\d+) cool=(\d+)`)

// killTrial runs one kill and returns why the target did not survive it,
// or "" if it did, and whether a thread of the target was in a ptrace stop
// just before the first kill. With inAStop, the kill waits for such a stop
// (up to 5 s; on a cool line a thread is stopped a few percent of the
// time); else it comes at a random instant.
func killTrial(t *testing.T, bin, mode, line string, fault []string, inAStop bool) (why string, inStop bool) {
	target := agenttest.Start(t, bin)
	src := selfcheckDir + "/main.go"
	ag := agenttest.Start(t, os.Args[0], miniAgentArg, strconv.Itoa(target.Pid), mode, line, strconv.Itoa(agenttest.MarkerLine(t, src, line)))
	// The agent's READY comes after its first hits.
	pids := map[string]int{"agent": ag.Pid}
	for _, c := range children(ag.Pid) {
		switch env := environ(c); {
		case strings.Contains(env, "\x00RIPTRACE_DELVE_WATCHDOG="+strconv.Itoa(target.Pid)):
			pids["watchdog"] = c
		case strings.Contains(env, "RIPTRACE_DELVE_WORKER="+strconv.Itoa(target.Pid)):
			pids["worker"] = c
		}
	}
	for _, f := range fault {
		if f != "then" && pids[f] == 0 {
			t.Fatalf("no %s process found (children of the agent: %v)", f, children(ag.Pid))
		}
	}
	t.Cleanup(func() {
		// Whatever outlived the trial: ours, by pid.
		for _, name := range []string{"worker", "watchdog"} {
			if pid := pids[name]; pid != 0 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	time.Sleep(time.Duration(rand.IntN(30_000)) * time.Microsecond)
	for end := time.Now().Add(5 * time.Second); inAStop && !traceStopped(target.Pid) && time.Now().Before(end); {
	}
	inStop = traceStopped(target.Pid)
	for _, f := range fault {
		if f == "then" {
			time.Sleep(time.Duration(50+rand.IntN(100)) * time.Millisecond)
			continue
		}
		syscall.Kill(pids[f], syscall.SIGKILL)
	}
	// Alive, right and running: both loops progress, twice in a row, well
	// after whatever a repair might take. (A traced process may be in a
	// ptrace stop at any one look: progress, not the state, says it runs.)
	time.Sleep(300 * time.Millisecond)
	return survived(t, target), inStop
}

// survived returns why target did not survive a kill, or "".
func survived(t *testing.T, target *agenttest.Proc) string {
	for round := range 2 {
		hot0, cool0, ok := lastAlive(target.Output())
		if !ok {
			return "no ALIVE line"
		}
		deadline := time.Now().Add(6 * time.Second)
		for {
			out := target.Output()
			if i := strings.Index(out, "WRONG"); i >= 0 {
				return "wrong result: " + strings.TrimSpace(strings.SplitN(out[i:], "\n", 2)[0])
			}
			if !target.Alive() {
				return fmt.Sprintf("died: %v %s", target.Wait(time.Second), lastLine(target.Stderr()))
			}
			hot, cool, _ := lastAlive(out)
			if hot > hot0 && cool > cool0+10 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Sprintf("stalled in round %d (state %c, hot %d→%d, cool %d→%d)", round+1, state(t, target.Pid), hot0, hot, cool0, cool)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return ""
}

func lastAlive(out string) (hot, cool int64, ok bool) {
	m := aliveLine.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return 0, 0, false
	}
	hot, _ = strconv.ParseInt(m[len(m)-1][1], 10, 64)
	cool, _ = strconv.ParseInt(m[len(m)-1][2], 10, 64)
	return hot, cool, true
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// children lists the child processes of pid.
func children(pid int) []int {
	var out []int
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

func environ(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	return "\x00" + string(b)
}

// runMiniAgent is the agent of TestKillMatrix's trials: args are the
// target's pid, the mode, the marker and its line. It attaches with a real
// Backend, sets a tracepoint with no stop budget and no rate limit, prints
// READY once hits come, and takes hits until it is killed.
func runMiniAgent(args []string) {
	pid, _ := strconv.Atoi(args[0])
	mode, marker := args[1], args[2]
	line, _ := strconv.Atoi(args[3])
	if mode == "int3" {
		os.Setenv("RIPTRACE_DELVE_MODE", "int3")
	} else {
		os.Unsetenv("RIPTRACE_DELVE_MODE")
	}
	b := delve.New(os.Stderr)
	if got, why := b.Mode(); got != mode {
		fmt.Fprintf(os.Stderr, "the backend runs in %s mode (%v), not %s\n", got, why, mode)
		os.Exit(1)
	}
	ctx := context.Background()
	tg, err := b.Attach(ctx, pid)
	for try := 0; err != nil && mode == "int3" && try < 5 && syscall.Kill(pid, 0) == nil; try++ {
		// Delve's own attach fails when a thread ends while it attaches
		// (selfcheck ends one five times a second): not what is measured.
		fmt.Fprintln(os.Stderr, "attaching again:", err)
		tg, err = b.Attach(ctx, pid)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "attaching:", err)
		os.Exit(1)
	}
	spec := fleet.Spec{ID: marker, Location: fleet.Location{Path: "selfcheck/main.go", Line: line}, Capture: fleet.DefaultCapture}
	spec.Capture.StackDepth = 16
	spec.Limits.MaxHitsPerSecond = 0
	if _, err := tg.Set(ctx, spec); err != nil {
		fmt.Fprintln(os.Stderr, "setting:", err)
		os.Exit(1)
	}
	n := 0
	for h := range tg.Hits() {
		if h.Fault != nil {
			fmt.Fprintln(os.Stderr, "fault:", h.Fault)
			os.Exit(1)
		}
		if n++; n == 3 {
			fmt.Printf("READY pid=%d\n", os.Getpid())
		}
	}
	os.Exit(0)
}
