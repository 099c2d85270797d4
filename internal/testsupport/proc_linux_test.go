package testsupport

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestPipeHolders names a process that keeps a pipe's write end open, the
// way a leaked child keeps a command's output open after the command exits.
func TestPipeHolders(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command("sleep", "60")
	cmd.Stdout = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	got := pipeHolders(r)
	if want := "pid " + strconv.Itoa(cmd.Process.Pid) + " (sleep 60)"; !strings.Contains(got, want) {
		t.Errorf("pipeHolders = %q, want it to name %q", got, want)
	}
}
