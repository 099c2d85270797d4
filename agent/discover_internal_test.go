package agent

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestInspectReadsAnExecutableOnce: processes of one executable (replicas,
// or jobs a host starts again and again) are inspected with one read of
// it. What each says of its process is its own; what the executable says,
// the build ID and link stamps among it, is the same.
func TestInspectReadsAnExecutableOnce(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "paced")
	build := exec.Command("go", "build", "-buildvcs=false", "-o", bin, "./testdata/targets/paced")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building paced: %v\n%s", err, out)
	}
	start := func(arg string) int {
		cmd := exec.Command(bin, arg)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || !strings.HasPrefix(line, "READY") {
			t.Fatalf("paced said %q, %v; want READY", line, err)
		}
		return cmd.Process.Pid
	}
	pids := []int{start("-rate=10"), start("-rate=20")}
	before := exeReads.Load()
	var got []string
	for _, pid := range pids {
		p, err := inspect(pid)
		if err != nil {
			t.Fatal(err)
		}
		if p.Pid != pid || len(p.Cmdline) != 2 || p.Build == "" {
			t.Fatalf("pid %d inspected as pid %d, command line %q, build %q", pid, p.Pid, p.Cmdline, p.Build)
		}
		got = append(got, p.Cmdline[1]+" "+p.Build)
	}
	if n := exeReads.Load() - before; n != 1 {
		t.Errorf("two processes of one executable: %d reads of it, want 1", n)
	}
	if !strings.HasPrefix(got[0], "-rate=10 ") || !strings.HasPrefix(got[1], "-rate=20 ") || got[0][9:] != got[1][9:] {
		t.Errorf("inspected as %q", got)
	}
}
