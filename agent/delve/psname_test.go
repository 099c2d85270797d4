package delve_test

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestWorkerNamedInPs: a worker is recognisable in ps by its role and its
// target's pid.
func TestWorkerNamedInPs(t *testing.T) {
	_, p, _ := attachTo(t, nil, loopDir, false)
	want := "riptrace-delve-worker target=" + strconv.Itoa(p.Pid) + " "
	for _, c := range children(os.Getpid()) {
		if !strings.Contains(environ(c), "RIPTRACE_DELVE_WORKER="+strconv.Itoa(p.Pid)) {
			continue
		}
		b, err := os.ReadFile("/proc/" + strconv.Itoa(c) + "/cmdline")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.ReplaceAll(string(b), "\x00", " "); !strings.HasPrefix(got, want) {
			t.Fatalf("worker %d's command line is %q, want it to start with %q", c, got, want)
		}
		return
	}
	t.Fatalf("no worker of pid %d among this test's children %v", p.Pid, children(os.Getpid()))
}
