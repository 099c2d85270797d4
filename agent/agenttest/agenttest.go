// Package agenttest helps tests run real target programs and real agents:
// it builds targets once per test process ([BuildTarget]; [BuildStamped]
// for a repository's commits with vcs.revision), gives them a name
// of the test's own ([Alias]), starts them and waits for their READY line
// ([Start]), finds marked lines in their sources ([MarkerLine]) and runs an
// agent with the Delve backend in the test process ([RunAgent]; the test
// binary's TestMain is then [Main]). Waiting for a condition is
// internal/testsupport's CheckFor, which needs neither the agent nor Delve.
//
// Targets live in testdata/targets/<name> next to the tests (see
// agent/testdata/targets) and print "READY pid=<pid> [addr=<host:port>]" once
// they are ready to be attached to. Lines to trace carry a comment such as
// //@trace(process); tests find them by name, never by number.
package agenttest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riptrace/riptrace/internal/testsupport"
)

// NoOpt is the build flag that turns off optimizations and inlining, the way
// Delve builds what it debugs. Without it, targets are built as production
// builds them.
const NoOpt = "-gcflags=all=-N -l"

// builds holds the binaries built by this process. Every build lands in one
// directory made on first use and left behind: a helper package has no hook at
// process exit (only a TestMain does, see [RemoveBuilds]), and the binaries are
// few and small.
var builds struct {
	mu  sync.Mutex // guards dir and m
	dir string
	m   map[string]*build // by absolute directory and flags
}

type build struct {
	done chan struct{} // closed when path or err is set
	path string
	err  error
}

// BuildTarget builds the main package in dir (relative to the test's working
// directory, that is its package directory, or absolute) with go build and the
// given flags, and returns the binary's path. Each (dir, flags) is built once
// per test process; parallel callers wait for the same build. A failed build
// fails the test with the compiler's output.
func BuildTarget(t testing.TB, dir string, flags ...string) string {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatalf("building %s: %v", dir, err)
	}
	key := strings.Join(append([]string{abs}, flags...), "\x00")

	builds.mu.Lock()
	b, ok := builds.m[key]
	if !ok {
		b = &build{done: make(chan struct{})}
		if builds.m == nil {
			builds.m = make(map[string]*build)
		}
		builds.m[key] = b
		if builds.dir == "" {
			builds.dir, b.err = os.MkdirTemp("", "riptrace-targets-")
		}
		if b.err == nil {
			b.path = filepath.Join(builds.dir, fmt.Sprintf("%s-%d", filepath.Base(abs), len(builds.m)))
		}
	}
	builds.mu.Unlock()

	if !ok {
		if b.err == nil {
			b.err = goBuild(abs, b.path, nil, flags)
		}
		close(b.done)
	}
	<-b.done
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// BuildStamped builds the main package in dir, as the tree is now, into
// out with the toolchain's VCS stamping on (vcs.revision, vcs.modified),
// whatever GOFLAGS says and outside any go.work. Unlike BuildTarget it
// caches nothing: tests build one repository at several commits. It returns
// the error, with the compiler's output, so that it may run in a goroutine.
func BuildStamped(dir, out string, flags ...string) error {
	env := []string{"GOFLAGS=-buildvcs=true", "GOWORK=off", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1"}
	return goBuild(dir, out, env, append([]string{"-buildvcs=true"}, flags...))
}

// BuildUnstamped builds the main package in dir, as the tree is now, into
// out without VCS stamping (-buildvcs=false), as a container build without
// .git does, outside any go.work. Like BuildStamped it caches nothing.
func BuildUnstamped(dir, out string, flags ...string) error {
	env := []string{"GOFLAGS=-buildvcs=false", "GOWORK=off"}
	return goBuild(dir, out, env, append([]string{"-buildvcs=false"}, flags...))
}

// goBuild runs go build in dir with flags, and env added to the
// environment.
func goBuild(dir, out string, env, flags []string) error {
	args := append([]string{"build", "-o", out}, flags...)
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Dir = dir
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s with go %s: %v\n%s", dir, strings.Join(args, " "), err, output)
	}
	return nil
}

// RemoveBuilds deletes the binaries built so far. Call it from TestMain after
// m.Run to leave nothing behind; no test may call BuildTarget afterwards.
func RemoveBuilds() error {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir == "" {
		return nil
	}
	err := os.RemoveAll(builds.dir)
	builds.dir, builds.m = "", nil
	return err
}

// MarkerLine returns the 1-based number of the one line of file that contains
// the marker @trace(name). It fails the test if there is no such line or more
// than one.
func MarkerLine(t testing.TB, file, name string) int {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatalf("finding marker %s: %v", name, err)
	}
	defer f.Close()
	marker := "@trace(" + name + ")"
	line := 0
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		if !strings.Contains(sc.Text(), marker) {
			continue
		}
		if line != 0 {
			t.Fatalf("%s: marker %s on lines %d and %d: markers must be unique", file, marker, line, n)
		}
		line = n
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading %s: %v", file, err)
	}
	if line == 0 {
		t.Fatalf("%s: no line has marker %s", file, marker)
	}
	return line
}

// CheckFor is testsupport.CheckFor, for the tests not moved to it yet
// (agent/delve's).
func CheckFor(t testing.TB, total, step time.Duration, f func() error) {
	t.Helper()
	testsupport.CheckFor(t, total, step, f)
}

// Alias returns bin under the base name name, in a directory of the test's
// own, so that an agent can select it by executable name.
func Alias(t testing.TB, bin, name string) string {
	t.Helper()
	return AliasAt(t, bin, filepath.Join(t.TempDir(), name))
}

// AliasAt puts bin at the path dst, as Alias does, and returns dst. A hard
// link is preferred: a copy's file is open for writing in the test's
// process while it writes it, and a fork by a parallel test meanwhile holds
// that descriptor until its child execs, so that exec of the copy fails
// with ETXTBSY ("text file busy") on a loaded machine.
func AliasAt(t testing.TB, bin, dst string) string {
	t.Helper()
	if os.Link(bin, dst) == nil {
		return dst
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}
