package web_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestBundleCurrent rebuilds the page's script from ui/ and checks that it
// is the committed static/app.js: a change to ui/src that was not rebuilt
// (npm run build in web/ui) fails here. make test installs ui's Node
// packages first (make deps); without them the test is skipped.
func TestBundleCurrent(t *testing.T) {
	if _, err := os.Stat("ui/node_modules/esbuild"); err != nil {
		t.Skip("web/ui/node_modules is not installed: run make deps")
	}
	out := filepath.Join(t.TempDir(), "app.js")
	cmd := exec.Command("node", "build.mjs")
	cmd.Dir = "ui"
	cmd.Env = append(os.Environ(), "OUTFILE="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the page's script: %v\n%s", err, b)
	}
	built, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile("static/app.js")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(built, committed) {
		t.Error("static/app.js is not what web/ui builds: run (cd web/ui && npm run build) and commit it")
	}
}
