package agent

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/riptrace/riptrace/fleet"
)

// TestInspectReadsAnExecutableOnce: processes of one executable (replicas,
// or jobs a host starts again and again) are inspected with one read of
// it. What each says of its process is its own; what the executable says,
// the build ID and link stamps among it, is the same.
func TestInspectReadsAnExecutableOnce(t *testing.T) {
	paced := pacedStarter(t)
	start := func(arg string) int { return paced(arg).Process.Pid }
	pids := []int{start("-rate=10"), start("-rate=20")}
	before := exeReads.Load()
	var got []string
	for _, pid := range pids {
		p, err := inspect(pid, nil)
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

// TestStampsReadWhenWanted: a scan meets every executable the host runs,
// and reads the link stamps (the executable's symbols) only of processes
// the agent may trace; a process it may trace later has them read then.
func TestStampsReadWhenWanted(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	prog := "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\nvar version string\n\nfunc main() {\n\tfmt.Println(\"READY\", version)\n\tos.Stdin.Read(make([]byte, 1))\n}\n"
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "stamped")
	build := exec.Command("go", "build", "-buildvcs=false", "-ldflags=-X main.version=v1.2.3", "-o", bin, src)
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", src, err, out)
	}
	cmd := exec.Command(bin)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || !strings.HasPrefix(line, "READY") {
		t.Fatalf("stamped said %q, %v; want READY", line, err)
	}
	pid := cmd.Process.Pid

	var asked *fleet.Process
	p, err := inspect(pid, func(p *fleet.Process) bool { asked = p; return false })
	if err != nil {
		t.Fatal(err)
	}
	if asked == nil || asked.Exe != bin || p.Build == "" || p.Stamps != nil {
		t.Fatalf("outside: asked about %+v; got build %q, stamps %q; want a build and no stamps", asked, p.Build, p.Stamps)
	}
	p, err = inspect(pid, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Stamps["main.version"] != "v1.2.3" {
		t.Errorf("wanted: stamps %q, want main.version v1.2.3", p.Stamps)
	}
}

// TestScanTellsProcessesOfOnePid: a scan sees a process that started since
// the last, drops one that exited, and takes a process that took the pid
// of one it saw for a new process, though it reads the start time of a
// process only once. The pid is handed to the new process through
// ns_last_pid, which other processes of the host may race for: the test
// tries again until its process gets it.
func TestScanTellsProcessesOfOnePid(t *testing.T) {
	start := pacedStarter(t)
	stop := func(cmd *exec.Cmd) {
		cmd.Process.Kill()
		cmd.Wait()
	}
	argOf := func(all map[int]*fleet.Process, pid int) string {
		if p := all[pid]; p != nil && len(p.Cmdline) == 2 {
			return p.Cmdline[1]
		}
		return "not found"
	}

	d := newDiscoverer()
	d.scan(nil)
	started := time.Now()
	first := start("-rate=10")
	pid := first.Process.Pid
	if got := argOf(d.scan(nil), pid); got != "-rate=10" {
		t.Fatalf("a process started since the last scan: found %s, want -rate=10", got)
	}
	// Seen twice: its start time is known.
	if got := argOf(d.scan(nil), pid); got != "-rate=10" {
		t.Fatalf("scanned again: found %s, want -rate=10", got)
	}
	stop(first)
	// Start times count clock ticks (10 ms): processes of one pid started
	// within one tick are one process to a scan, as they were before it
	// read start times once.
	time.Sleep(time.Until(started.Add(30 * time.Millisecond)))

	var second *exec.Cmd
	for try := 0; try < 100 && second == nil; try++ {
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0); err != nil {
			t.Skipf("cannot choose the next pid: %v", err)
		}
		cmd := start("-rate=20")
		if cmd.Process.Pid == pid {
			second = cmd
		} else {
			stop(cmd)
		}
	}
	if second == nil {
		t.Skipf("pid %d was taken by other processes of the host 100 times", pid)
	}
	if got := argOf(d.scan(nil), pid); got != "-rate=20" {
		t.Fatalf("pid %d taken by a new process: found %s, want -rate=20", pid, got)
	}
	stop(second)
	if got := argOf(d.scan(nil), pid); got != "not found" {
		t.Fatalf("pid %d exited: found %s", pid, got)
	}
}

// BenchmarkScan scans this host's /proc as an idle agent does each second,
// and reports the CPU time a scan takes (user and system, of the whole
// test process), which a loaded host does not inflate as it does the wall
// time.
func BenchmarkScan(b *testing.B) {
	d := newDiscoverer()
	d.scan(nil)
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	before := cpu()
	for b.Loop() {
		d.scan(nil)
	}
	b.ReportMetric(float64(cpu()-before)/float64(b.N), "cpu-ns/scan")
}

// pacedStarter builds the paced target and returns what starts it with
// arg, ready (it printed READY), killed at the test's end.
func pacedStarter(t *testing.T) func(arg string) *exec.Cmd {
	bin := filepath.Join(t.TempDir(), "paced")
	build := exec.Command("go", "build", "-buildvcs=false", "-o", bin, "./testdata/targets/paced")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building paced: %v\n%s", err, out)
	}
	return func(arg string) *exec.Cmd {
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
		return cmd
	}
}
