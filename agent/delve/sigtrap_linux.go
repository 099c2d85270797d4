package delve

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// trapPending reports whether a SIGTRAP is pending for pid, on the process
// (ShdPnd) or on any of its threads (SigPnd).
func trapPending(pid int) bool {
	const mask = 1 << (syscall.SIGTRAP - 1)
	if pendingSignals(fmt.Sprintf("/proc/%d/status", pid), "ShdPnd:")&mask != 0 {
		return true
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	for _, f := range tasks {
		if pendingSignals(f, "SigPnd:")&mask != 0 {
			return true
		}
	}
	return false
}

// pendingSignals reads one pending-signal mask of a /proc status file.
func pendingSignals(file, field string) uint64 {
	f, err := os.Open(file)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			m, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return m
		}
	}
	return 0
}
