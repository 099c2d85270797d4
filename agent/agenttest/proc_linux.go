package agenttest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/riptrace/riptrace/agent/delve"
	"github.com/riptrace/riptrace/internal/testsupport"
)

// StartAs is [Start] with the process running as cred's user and groups.
// That user must be able to reach bin: binaries from [BuildTarget] and
// [Alias] sit in directories only their owner may enter.
func StartAs(t testing.TB, cred *syscall.Credential, bin string, args ...string) *Proc {
	t.Helper()
	return testsupport.StartWith(t, func(c *exec.Cmd) { c.SysProcAttr.Credential = cred }, bin, args...)
}

// TracerPid returns the pid tracing pid, or 0 when none does or the process
// is gone.
func TracerPid(pid int) int { return delve.TracerPid(pid) }

// TraceStopped reports whether any thread of pid, and whether every one, is
// in a ptrace stop (state t in /proc/PID/task/TID/stat).
func TraceStopped(pid int) (anyThread, every bool) {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	every = len(tasks) > 0
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			continue
		}
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && i+2 < len(b) && b[i+2] == 't' {
			anyThread = true
		} else {
			every = false
		}
	}
	return anyThread, every
}
