// Package editors holds the editor plugins (editors/vscode, editors/nvim)
// and their tests: the plugins build, they agree with the Go side's lists of
// attach attributes, LSP commands and settings, and they work against a real
// fleet.
package editors

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/dap"
	"github.com/riptrace/riptrace/fleet/fleettest"
	"github.com/riptrace/riptrace/internal/testsupport"
	"github.com/riptrace/riptrace/lsp"
)

const vscodeDir = "vscode"

// vscodePackage is the part of editors/vscode/package.json the checks read.
type vscodePackage struct {
	Main             string   `json:"main"`
	ActivationEvents []string `json:"activationEvents"`
	Contributes      struct {
		Breakpoints []struct {
			Language string `json:"language"`
		} `json:"breakpoints"`
		Debuggers []struct {
			Type                    string `json:"type"`
			ConfigurationAttributes map[string]struct {
				Properties map[string]vscodeSchemaProperty `json:"properties"`
			} `json:"configurationAttributes"`
		} `json:"debuggers"`
		Commands []struct {
			Command string `json:"command"`
			Title   string `json:"title"`
		} `json:"commands"`
		Configuration struct {
			Properties map[string]vscodeSchemaProperty `json:"properties"`
		} `json:"configuration"`
	} `json:"contributes"`
}

type vscodeSchemaProperty struct {
	Type         json.RawMessage   `json:"type"` // a type or a list of types
	Enum         []string          `json:"enum"`
	Description  string            `json:"description"`
	Examples     []json.RawMessage `json:"examples"`
	ErrorMessage string            `json:"errorMessage"`
}

// types returns the JSON Schema types the property allows.
func (p vscodeSchemaProperty) types() []string {
	var one string
	if json.Unmarshal(p.Type, &one) == nil {
		return []string{one}
	}
	var many []string
	json.Unmarshal(p.Type, &many)
	return many
}

func vscodeReadPackage(t *testing.T) *vscodePackage {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vscodeDir, "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	var pkg vscodePackage
	if err := json.Unmarshal(b, &pkg); err != nil {
		t.Fatalf("reading %s/package.json: %v", vscodeDir, err)
	}
	return &pkg
}

// TestVSCodePackageMatchesGo checks the extension's package.json against the
// Go side's lists, so that neither can change without the other:
// dap.AttachAttributes are the attach configuration's attributes, lsp.Commands
// its commands and lsp.Settings its riptrace.* settings.
func TestVSCodePackageMatchesGo(t *testing.T) {
	pkg := vscodeReadPackage(t)
	c := pkg.Contributes

	if !slices.ContainsFunc(c.Breakpoints, func(b struct {
		Language string `json:"language"`
	}) bool {
		return b.Language == "go"
	}) {
		t.Error(`contributes.breakpoints lacks {"language": "go"}: VS Code would not let users set breakpoints in Go files`)
	}
	if !slices.Contains(pkg.ActivationEvents, "onDebugResolve:riptrace") {
		t.Error(`activationEvents lacks "onDebugResolve:riptrace"`)
	}
	if len(c.Debuggers) != 1 || c.Debuggers[0].Type != "riptrace" {
		t.Fatalf("contributes.debuggers = %+v, want one of type riptrace", c.Debuggers)
	}

	// Attach attributes: the same names, types, descriptions and examples.
	props := c.Debuggers[0].ConfigurationAttributes["attach"].Properties
	for _, a := range dap.AttachAttributes {
		p, ok := props[a.Name]
		if !ok {
			t.Errorf("attach attribute %q (dap.AttachAttributes) is missing from configurationAttributes.attach: add\n\t%q: {\"type\": %q, \"description\": %q}", a.Name, a.Name, a.Type, a.Description)
			continue
		}
		if !slices.Contains(p.types(), a.Type) {
			t.Errorf("attach attribute %q: package.json type %s, dap.AttachAttributes says %q", a.Name, p.Type, a.Type)
		}
		if !strings.HasPrefix(p.Description, a.Description) {
			t.Errorf("attach attribute %q: package.json description %q does not start with dap.AttachAttributes' %q", a.Name, p.Description, a.Description)
		}
		want, _ := json.Marshal(a.Example)
		if len(p.Examples) == 0 || !vscodeJSONEqual(p.Examples[0], want) {
			t.Errorf("attach attribute %q: first example %s, dap.AttachAttributes' is %s", a.Name, vscodeFirstExample(p.Examples), want)
		}
		if p.ErrorMessage == "" {
			t.Errorf("attach attribute %q has no errorMessage: say what a right value looks like", a.Name)
		}
		if !slices.Equal(p.Enum, a.Enum) {
			t.Errorf("attach attribute %q: package.json enum %q, dap.AttachAttributes' is %q", a.Name, p.Enum, a.Enum)
		}
	}
	for name := range props {
		if !slices.ContainsFunc(dap.AttachAttributes, func(a dap.Attribute) bool { return a.Name == name }) {
			t.Errorf("configurationAttributes.attach has %q, which riptrace dap does not read (dap.AttachAttributes)", name)
		}
	}

	// Commands: the server's, which vscode-languageclient binds, plus the
	// extension's own: the picker, and those of the hits view and timeline.
	var cmds []string
	for _, cmd := range c.Commands {
		cmds = append(cmds, cmd.Command)
	}
	want := []string{"riptrace.pickHosts", "riptrace.openHit", "riptrace.showTimeline", "riptrace.hitsViewLatency"}
	for _, cmd := range lsp.Commands {
		want = append(want, cmd.Name)
	}
	slices.Sort(cmds)
	slices.Sort(want)
	if !slices.Equal(cmds, want) {
		t.Errorf("contributes.commands = %q, want %q (lsp.Commands and the extension's own)", cmds, want)
	}

	// Settings: riptrace.<name> for each of lsp.Settings, plus riptrace.path.
	settings := c.Configuration.Properties
	for _, s := range lsp.Settings {
		p, ok := settings["riptrace."+s.Name]
		if !ok {
			t.Errorf("setting riptrace.%s (lsp.Settings) is missing from contributes.configuration", s.Name)
			continue
		}
		if !slices.Equal(p.types(), []string{s.Type}) {
			t.Errorf("setting riptrace.%s: type %s, lsp.Settings says %q", s.Name, p.Type, s.Type)
		}
		if p.Description != s.Description {
			t.Errorf("setting riptrace.%s: description %q, lsp.Settings says %q", s.Name, p.Description, s.Description)
		}
		if !slices.Equal(p.Enum, s.Enum) {
			t.Errorf("setting riptrace.%s: enum %q, lsp.Settings says %q", s.Name, p.Enum, s.Enum)
		}
	}
	for name := range settings {
		short := strings.TrimPrefix(name, "riptrace.")
		if short != "path" && !slices.ContainsFunc(lsp.Settings, func(s lsp.Setting) bool { return s.Name == short }) {
			t.Errorf("contributes.configuration has %q, which riptrace lsp does not read (lsp.Settings)", name)
		}
	}

	// The extension passes exactly those settings to the server.
	src, err := os.ReadFile(filepath.Join(vscodeDir, "src", "extension.ts"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`for \(const key of \[([^\]]*)\]\)`).FindSubmatch(src)
	if m == nil {
		t.Fatal("src/extension.ts: no `for (const key of [...])` list of the server's settings")
	}
	var keys []string
	if err := json.Unmarshal([]byte("["+strings.ReplaceAll(string(m[1]), "'", `"`)+"]"), &keys); err != nil {
		t.Fatalf("src/extension.ts: reading the server's settings %s: %v", m[1], err)
	}
	var names []string
	for _, s := range lsp.Settings {
		names = append(names, s.Name)
	}
	if !slices.Equal(keys, names) {
		t.Errorf("src/extension.ts passes the server the settings %q, lsp.Settings are %q", keys, names)
	}
}

func vscodeJSONEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

func vscodeFirstExample(ex []json.RawMessage) string {
	if len(ex) == 0 {
		return "(none)"
	}
	return string(ex[0])
}

// vscodeNode returns the node binary and checks that `make deps` installed the
// extension's packages. Node is part of every machine this runs on: its
// absence is a failure, not a skip.
func vscodeNode(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: the VS Code extension's tests need Node.js 20 or later, then `make deps` (npm ci in editors/vscode)")
	}
	if _, err := os.Stat(filepath.Join(vscodeDir, "node_modules", "@vscode", "vsce")); err != nil {
		t.Fatalf("%s/node_modules lacks @vscode/vsce: run `make deps` (npm ci in editors/vscode)", vscodeDir)
	}
	return bin
}

// vscodeRun runs a command in editors/vscode and fails the test with its output if
// it fails.
func vscodeRun(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = vscodeDir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s in %s: %v\n%s", name, strings.Join(args, " "), vscodeDir, err, out)
	}
	return string(out)
}

var vscodeVSIX struct {
	once sync.Once
	path string
	out  string
	err  error
}

// vscodeBuildVSIX type-checks, bundles and packages the extension once per test
// process (npm run vsix) and returns the .vsix. The bundle also leaves
// dist/fleet.js, the picker's module, for the node tests.
func vscodeBuildVSIX(t *testing.T) string {
	t.Helper()
	vscodeNode(t)
	vscodeVSIX.once.Do(func() {
		// In dist/, which git ignores and the .vsix leaves out: one
		// file, replaced by each run.
		abs, err := filepath.Abs(filepath.Join(vscodeDir, "dist", "test.vsix"))
		if err != nil {
			vscodeVSIX.err = err
			return
		}
		vscodeVSIX.path = abs
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "run", "vsix")
		cmd.Dir = vscodeDir
		cmd.Env = append(os.Environ(), "VSIX="+vscodeVSIX.path)
		out, err := cmd.CombinedOutput()
		vscodeVSIX.out = string(out)
		if err != nil {
			vscodeVSIX.err = fmt.Errorf("npm run vsix (tsc, esbuild, vsce package) in %s: %v\n%s", vscodeDir, err, out)
		}
	})
	if vscodeVSIX.err != nil {
		t.Fatal(vscodeVSIX.err)
	}
	return vscodeVSIX.path
}

// TestVSCodeVSIX checks that the extension type-checks, bundles and packages
// offline, and that the .vsix holds the bundle and the manifest and nothing
// of node_modules.
func TestVSCodeVSIX(t *testing.T) {
	t.Parallel()
	path := vscodeBuildVSIX(t)
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatalf("opening %s: %v", path, err)
	}
	defer zr.Close()
	files := map[string]*zip.File{}
	for _, f := range zr.File {
		files[f.Name] = f
		if strings.Contains(f.Name, "node_modules/") || strings.HasPrefix(f.Name, "extension/src/") {
			t.Errorf("the .vsix holds %s: .vscodeignore should leave it out", f.Name)
		}
	}
	read := func(name string) []byte {
		f, ok := files[name]
		if !ok {
			t.Fatalf("the .vsix lacks %s; it holds %v", name, vscodeKeys(files))
		}
		r, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	manifest, err := os.ReadFile(filepath.Join(vscodeDir, "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !vscodeJSONEqual(read("extension/package.json"), manifest) {
		t.Error("the .vsix's extension/package.json differs from editors/vscode/package.json")
	}
	bundle := read("extension/dist/extension.js")
	for _, s := range []string{"riptrace.pickHosts", `"dap"`, `"lsp"`, "registerDebugAdapterDescriptorFactory", "LanguageClient"} {
		if !bytes.Contains(bundle, []byte(s)) {
			t.Errorf("extension/dist/extension.js lacks %s", s)
		}
	}
	if bytes.Contains(bundle, []byte(`require("vscode-languageclient`)) {
		t.Error("extension/dist/extension.js requires vscode-languageclient at run time: it must be bundled")
	}
	if !strings.Contains(string(read("extension.vsixmanifest")), `Id="riptrace"`) {
		t.Error("extension.vsixmanifest does not name the extension riptrace")
	}
}

func vscodeKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestVSCodeLaunchSchema validates launch configurations against the schema
// VS Code builds from package.json, with VS Code's JSON validator
// (vscode/test/schema.test.mjs).
func TestVSCodeLaunchSchema(t *testing.T) {
	t.Parallel()
	out := vscodeRun(t, nil, vscodeNode(t), "--test", "--test-reporter=spec", "test/schema.test.mjs")
	if testing.Verbose() {
		t.Log(out)
	}
}

// TestVSCodeHostPicker builds the picker's rows with the extension's own
// module (vscode/test/picker.test.mjs, under plain Node) from a real
// `riptrace hosts --json` against a real NATS server, a real `riptrace agent`
// and a real Go target.
func TestVSCodeHostPicker(t *testing.T) {
	t.Parallel()
	nodeBin := vscodeNode(t)
	vscodeBuildVSIX(t) // dist/fleet.js
	bin := agenttest.BuildTarget(t, "../cmd/riptrace")
	exe := agenttest.Alias(t, agenttest.BuildTarget(t, "../agent/testdata/targets/loop"), fmt.Sprintf("vscode-picker-loop-%d", os.Getpid()))
	srv := fleettest.RunServer(t)
	const host = "vscode-picker"

	target := agenttest.Start(t, exe)
	agentProc := vscodeStartAgent(t, bin, "agent", "--nats", srv.ClientURL(), "--host", host, "--processes", filepath.Base(exe))

	c := fleettest.Connect(t, srv)
	testsupport.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		hosts, err := c.Hosts(context.Background())
		if err != nil {
			return err
		}
		for _, h := range hosts {
			if h.Name != host || h.Profile == nil {
				continue
			}
			for _, p := range h.Profile.Processes {
				if p.Pid == target.Pid {
					return nil
				}
			}
			return fmt.Errorf("host %s lists no pid %d yet", host, target.Pid)
		}
		return fmt.Errorf("no host %s yet (agent stderr: %s)", host, agentProc.Stderr())
	})

	out := vscodeRun(t, []string{
		"RIPTRACE_BIN=" + bin,
		"RIPTRACE_NATS=" + srv.ClientURL(),
		"RIPTRACE_DEAD_NATS=nats://" + vscodeDeadAddr(t),
		"RIPTRACE_HOST=" + host,
		"RIPTRACE_PID=" + strconv.Itoa(target.Pid),
		"RIPTRACE_EXE=" + filepath.Base(exe),
	}, nodeBin, "--test", "--test-reporter=spec", "test/picker.test.mjs")
	if testing.Verbose() {
		t.Log(out)
	}
	if !target.Alive() {
		t.Error("the target died")
	}
}

// vscodeDeadAddr returns a loopback address where nothing listens.
func vscodeDeadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// vscodeStartAgent runs `riptrace agent ...` as its own process (a tracer must not
// be the parent of its tracees) until the test ends, when it must stop on
// SIGTERM.
func vscodeStartAgent(t *testing.T, bin string, args ...string) *testsupport.Proc {
	t.Helper()
	p := testsupport.Launch(t, nil, bin, args...)
	t.Cleanup(func() {
		if err := p.Stop(); errors.Is(err, testsupport.ErrKilled) {
			t.Errorf("riptrace agent: %v\n%s", err, p.Stderr())
		}
	})
	return p
}
