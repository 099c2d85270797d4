// Package sourcetest makes real git repositories for the tests of source
// sync: the source package's own and the agent's end-to-end ones. It runs
// the git command, with no user configuration, so tests see what git does.
package sourcetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Git runs git in dir and returns its trimmed output; it fails the test if
// git fails. Automatic gc is off: a commit of many files started one in
// the background, which repacked objects while the test cloned them.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=RipTrace Test", "-c", "user.email=test@riptrace.invalid", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", "-c", "gc.auto=0", "-c", "maintenance.auto=false"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return strings.TrimSpace(string(out))
}

// Init makes an empty repository in a new temporary directory and returns
// the directory, symlinks resolved.
func Init(t testing.TB) string {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	Git(t, dir, "init", "-q")
	return dir
}

// Write writes text to the slash path rel under dir, making directories.
func Write(t testing.TB, dir, rel, text string) string {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Commit writes files (slash path → text), stages everything and commits,
// and returns the new commit's hash.
func Commit(t testing.TB, dir, msg string, files map[string]string) string {
	t.Helper()
	for rel, text := range files {
		Write(t, dir, rel, text)
	}
	Git(t, dir, "add", "-A")
	Git(t, dir, "commit", "-q", "--allow-empty", "-m", msg)
	return Git(t, dir, "rev-parse", "HEAD")
}

// movedMain is a target at two commits: {{above}} is where commit B
// inserts lines above the traced one.
const movedMain = `package main

import (
	"fmt"
	"os"
	"time"
)
{{above}}
//go:noinline
func work(n int) int {
	m := n * 3
	m += n //@trace(work)
	return m
}

func main() {
	fmt.Printf("READY pid=%d\n", os.Getpid())
	for n := 0; ; n++ {
		work(n)
		time.Sleep(5 * time.Millisecond)
	}
}
`

// MovedBy is how many lines commit B of MovedLine inserts above the marked
// line: its line in A is its line in the checkout less MovedBy.
const MovedBy = 2

// MovedLine makes a repository whose main.go, a target that calls work
// every 5 ms, is at two commits: A, built into bin by build (with its
// vcs.revision: agenttest.BuildStamped), and B, checked out, which inserts
// MovedBy lines above the line marked //@trace(work). It is what the fleet
// runs while an editor is ahead.
func MovedLine(t testing.TB, build func(dir, out string, flags ...string) error) (repo, bin, revA string) {
	t.Helper()
	repo = Init(t)
	Write(t, repo, "go.mod", "module example.com/revs\n\ngo 1.26\n")
	revA = Commit(t, repo, "A", map[string]string{"main.go": strings.Replace(movedMain, "{{above}}", "", 1)})
	bin = filepath.Join(t.TempDir(), "revs")
	if err := build(repo, bin); err != nil {
		t.Fatalf("building commit A: %v", err)
	}
	Commit(t, repo, "B", map[string]string{"main.go": strings.Replace(movedMain, "{{above}}", "\n// Added in B,\n// above the traced line.", 1)})
	return repo, bin, revA
}
