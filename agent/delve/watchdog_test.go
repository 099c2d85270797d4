package delve_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/agent/delve"
	"github.com/riptrace/riptrace/fleet"
)

func TestMain(m *testing.M) { agenttest.Main(m) }

const loopDir = "../testdata/targets/loop"

// TestWorkerSIGKILL SIGKILLs the Delve worker of a target whose tracepoint
// hits every few milliseconds: the worker's watchdog must write the original
// bytes back (checked in /proc/PID/mem at the breakpoint) and the target must
// keep running (new ALIVE lines, never a zombie) for seconds after. Run it
// with -count to see that it is not luck.
//
// The target pauses between hits, so the kill lands while it runs: a kill
// that lands while a thread sits at a breakpoint, its SIGTRAP not yet
// cancelled, is beyond repair (see watchdog_linux.go).
func TestWorkerSIGKILL(t *testing.T) {
	t.Parallel()
	bin := agenttest.BuildTarget(t, loopDir)
	p := agenttest.Start(t, bin, "-every", "20ms")
	log := io.Discard
	if testing.Verbose() {
		log = os.Stderr
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tg, err := delve.New(log).Attach(ctx, p.Pid)
	if err != nil {
		t.Fatal(err)
	}
	spec := fleet.Spec{
		ID:       "wd",
		Location: fleet.Location{Path: "loop/main.go", Line: agenttest.MarkerLine(t, loopDir+"/main.go", "process")},
		Capture:  fleet.DefaultCapture,
	}
	pl, err := tg.Set(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if b := text(t, p.Pid, pl.PCs[0]); b != 0xCC {
		t.Fatalf("byte at the breakpoint %#x is %#x, want int3 (0xcc)", pl.PCs[0], b)
	}
	for range 5 {
		if _, ok := <-tg.Hits(); !ok {
			t.Fatal("hits ended before 5")
		}
	}
	// A hit reaches us while its stop is ending: kill in the pause after,
	// once no thread sits in a ptrace stop.
	time.Sleep(5 * time.Millisecond)
	for traceStopped(p.Pid) {
		time.Sleep(100 * time.Microsecond)
	}
	worker := tracer(t, p.Pid)
	if worker == 0 {
		t.Fatal("the target is not traced")
	}
	if err := syscall.Kill(worker, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for range tg.Hits() {
	}
	agenttest.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if !p.Alive() {
			t.Fatalf("target died when its worker was killed: %v\n%s", p.Wait(time.Second), p.Stderr())
		}
		if b := text(t, p.Pid, pl.PCs[0]); b == 0xCC {
			return fmt.Errorf("the int3 at %#x is still there", pl.PCs[0])
		}
		return nil
	})
	// Three new ALIVE lines: the target runs, through its traced line
	// (ALIVE counts its iterations), for seconds.
	for range 3 {
		n := strings.Count(p.Output(), "ALIVE")
		agenttest.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
			if !p.Alive() {
				t.Fatalf("target died after its worker was killed:\n%s", p.Stderr())
			}
			if strings.Count(p.Output(), "ALIVE") <= n {
				return fmt.Errorf("no new ALIVE line")
			}
			return nil
		})
	}
	if s := p.Stderr(); strings.Contains(s, "SIGTRAP") {
		t.Errorf("target stderr mentions SIGTRAP:\n%s", s)
	}
	if st := state(t, p.Pid); st == 'T' || st == 't' || st == 'Z' {
		t.Errorf("target state %c after the watchdog, want running or sleeping", st)
	}
}

// text reads the byte at addr in pid's memory.
func text(t *testing.T, pid int, addr uint64) byte {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, int64(addr)); err != nil {
		t.Fatalf("reading pid %d at %#x: %v", pid, addr, err)
	}
	return b[0]
}

// tracer returns the pid tracing pid, or 0.
func tracer(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "TracerPid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// state returns pid's state letter from /proc/PID/stat.
func state(t *testing.T, pid int) byte {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 'X'
	}
	i := strings.LastIndexByte(string(b), ')')
	return b[i+2]
}

// traceStopped reports whether any thread of pid is in a ptrace stop.
func traceStopped(pid int) bool {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			continue
		}
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && b[i+2] == 't' {
			return true
		}
	}
	return false
}
