package lsp_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent/agenttest"
)

// These tests run `riptrace lsp`, built from this checkout, under clients
// we did not write: headless Neovim (Debian's neovim package, installed by
// .ci/run) and Microsoft's vscode-languageserver-protocol from npm
// (installed by `make deps`). They prove that real editors accept our
// messages.

// buildRiptrace builds cmd/riptrace once per test process.
func buildRiptrace(t *testing.T) string {
	t.Helper()
	return agenttest.BuildTarget(t, "../cmd/riptrace")
}

// clientResult is what the client scripts report.
type clientResult struct {
	Error string `json:"error"`
	Lens  string `json:"lens"`
	Hints []struct {
		Line      int    `json:"line"`
		Character int    `json:"character"`
		Label     string `json:"label"`
		Position  *struct {
			Line      int `json:"line"`
			Character int `json:"character"`
		} `json:"position"`
	} `json:"hints"`
	Hover         string `json:"hover"`
	LensRefreshes int    `json:"lensRefreshes"`
	ExitCode      *int   `json:"exitCode"`
}

// check asserts what every client must have seen on the traced line.
func (r *clientResult) check(t *testing.T, e *fleetEnv, line int) {
	t.Helper()
	t.Logf("client saw lens %q, %d hints, %d lens refreshes", r.Lens, len(r.Hints), r.LensRefreshes)
	if r.Error != "" {
		t.Fatalf("client failed: %s", r.Error)
	}
	if !regexp.MustCompile(`^● \d+ hits? · 1 host · last \d+s ago$`).MatchString(r.Lens) {
		t.Errorf("lens %q, want ● N hits · 1 host · last Ns ago", r.Lens)
	}
	src, err := os.ReadFile(e.src)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Split(string(src), "\n")[line]
	var atEnd bool
	for _, h := range r.Hints {
		l, c := h.Line, h.Character
		if h.Position != nil {
			l, c = h.Position.Line, h.Position.Character
		}
		if l == line && c == len(text) && regexp.MustCompile(`\bn=\d+\b`).MatchString(h.Label) {
			atEnd = true
		}
	}
	if !atEnd {
		t.Errorf("no inlay hint with n=<int> at the end of line %d %q; hints: %+v", line, text, r.Hints)
	}
}

func TestNeovimClient(t *testing.T) {
	t.Parallel()
	nvim, err := exec.LookPath("nvim")
	if err != nil {
		t.Fatal("nvim is not installed: apt-get install -y neovim (.ci/run does it)")
	}
	bin := buildRiptrace(t)
	e := newFleetEnv(t)
	e.declare(t)
	line := e.line - 1
	tmp := t.TempDir()
	out := filepath.Join(tmp, "out.json")
	opts, _ := json.Marshal(map[string]any{"nats": e.url, "processes": []string{e.exe}, "history": "1m"})
	cmd := exec.Command(nvim, "--headless", "--clean", "-n", "-i", "NONE", "-c", "luafile testdata/nvim/client.lua")
	cmd.Env = append(os.Environ(),
		"RT_BIN="+bin, "RT_ROOT="+e.dir, "RT_FILE="+e.src, fmt.Sprintf("RT_LINE=%d", line), "RT_OPTIONS="+string(opts), "RT_OUT="+out,
		"XDG_CACHE_HOME="+tmp, "XDG_STATE_HOME="+tmp, "XDG_DATA_HOME="+tmp, "XDG_CONFIG_HOME="+tmp)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := runWithin(cmd, 60*time.Second); err != nil {
		t.Fatalf("nvim: %v\n%s", err, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("nvim wrote no result: %v\n%s", err, stderr.String())
	}
	var r clientResult
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("reading nvim's result %s: %v", b, err)
	}
	r.check(t, e, line)
}

func TestVSCodeClient(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("nodetest/node_modules/vscode-languageserver-protocol"); err != nil {
		t.Fatal("lsp/nodetest/node_modules is missing: run `make deps` (it runs npm ci in lsp/nodetest)")
	}
	bin := buildRiptrace(t)
	e := newFleetEnv(t)
	e.declare(t)
	line := e.line - 1
	opts, _ := json.Marshal(map[string]any{"nats": e.url, "processes": []string{e.exe}, "history": "1m"})
	cmd := exec.Command("node", "nodetest/client.js", bin, e.dir, e.src, fmt.Sprint(line), string(opts))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := runWithin(cmd, 60*time.Second); err != nil {
		t.Fatalf("node client: %v\n%s", err, stderr.String())
	}
	var r clientResult
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("reading the node client's result %q: %v\n%s", stdout.String(), err, stderr.String())
	}
	r.check(t, e, line)
	if r.LensRefreshes == 0 {
		t.Error("the client declared codeLens refreshSupport but got no workspace/codeLens/refresh")
	}
	if !strings.Contains(r.Hover, "**"+e.host+"**") {
		t.Errorf("hover does not list host %s:\n%s", e.host, r.Hover)
	}
	if r.ExitCode == nil || *r.ExitCode != 0 {
		t.Errorf("riptrace lsp exit code after shutdown and exit: %v, want 0", r.ExitCode)
	}
}

// runWithin runs cmd and kills it if it takes longer than d.
func runWithin(cmd *exec.Cmd, d time.Duration) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("killed after %v", d)
	}
}
