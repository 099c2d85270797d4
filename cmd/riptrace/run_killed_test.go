package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/riptrace/riptrace/internal/testsupport"
)

// TestRunInterrupted stops riptrace run in the middle of a step, with
// Ctrl-C or with SIGKILL, which leaves it no time to clean up: either way
// the service it started, the child the service started and the child of
// the step under way are gone.
func TestRunInterrupted(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			pids := filepath.Join(dir, "pids")
			file := filepath.Join(dir, "interrupted.yaml")
			os.WriteFile(file, []byte(fmt.Sprintf(`services:
  - name: tree
    command: sh
    args: [-c, "sleep 1000 & echo $$ $! > %[1]s.tmp && mv %[1]s.tmp %[1]s; echo READY; wait"]
    ready: {log: ^READY}
steps:
  - {sh: "sleep 600 & echo $! > %[1]s.step; wait", timeout: 10m}
`, pids)), 0o644)
			r := start(t, "run", file)
			var started []int
			testsupport.CheckFor(t, 2*time.Minute, 20*time.Millisecond, func() error {
				b, err := os.ReadFile(pids)
				if err != nil {
					return err
				}
				started = nil
				for _, f := range strings.Fields(string(b)) {
					pid, _ := strconv.Atoi(f)
					started = append(started, pid)
				}
				return nil
			})
			testsupport.CheckFor(t, time.Minute, 20*time.Millisecond, func() error {
				b, err := os.ReadFile(pids + ".step")
				if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
					started = append(started, pid)
					return nil
				}
				return fmt.Errorf("the step has not started its child: %v", err)
			})
			r.signal(t, sig)
			select {
			case <-r.Exited():
			case <-time.After(time.Minute):
				t.Fatalf("riptrace run still runs a minute after %v", sig)
			}
			testsupport.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
				for _, pid := range started {
					if running(pid) {
						return fmt.Errorf("pid %d, started by the run's service, still runs after the run got %v", pid, sig)
					}
				}
				return nil
			})
		})
	}
}
