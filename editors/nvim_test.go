package editors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/dap"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
	"github.com/riptrace/riptrace/internal/testsupport"
	"github.com/riptrace/riptrace/lsp"
)

// These tests run the Neovim plugin in editors/nvim under headless Neovim
// from Debian's neovim package (0.7.2 on bookworm; .ci/run installs it),
// against `riptrace lsp` built from this checkout, a real nats-server, a
// real agent and a real target. nvim-dap is not installed here (GPL-3.0, in
// neither Debian nor npm): the adapter and configuration tables are checked
// against a stand-in module in editors/nvim/testdata/dap; the DAP protocol
// itself is the dap package's tests' business.

// nvimDir is the plugin's runtime directory.
const nvimDir = "nvim"

// loopDir is the target the tests trace: the agent's loop program.
const loopDir = "../agent/testdata/targets/loop"

// nvimTimeout bounds one headless Neovim run; a working one takes seconds.
const nvimTimeout = 90 * time.Second

func nvimBin(t *testing.T) string {
	t.Helper()
	nvim, err := exec.LookPath("nvim")
	if err != nil {
		t.Fatal("nvim is not installed: apt-get install -y neovim (.ci/run does it)")
	}
	return nvim
}

func absDir(t *testing.T, dir string) string {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// nvimCommand returns headless Neovim with the plugin on its runtimepath
// (so plugin/riptrace.lua loads as in a user's setup), no user config and
// no state outside the test's directory.
func nvimCommand(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	tmp := t.TempDir()
	base := []string{"--headless", "--clean", "-n", "-i", "NONE", "--cmd", "set rtp^=" + absDir(t, nvimDir)}
	cmd := exec.Command(nvimBin(t), append(base, args...)...)
	cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+tmp, "XDG_STATE_HOME="+tmp, "XDG_DATA_HOME="+tmp, "XDG_CONFIG_HOME="+tmp,
		"RT_TESTDATA="+absDir(t, filepath.Join(nvimDir, "testdata")))
	return cmd
}

// runScript runs a script of editors/nvim/testdata under headless Neovim
// with env, and decodes what it wrote to $RT_OUT into res. During the run,
// steps are called with each step the script hands over (see util.lua).
func runScript(t *testing.T, script string, env []string, res any, steps map[string]func(data json.RawMessage)) {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "out.json")
	cmd := nvimCommand(t, "-c", "luafile "+absDir(t, filepath.Join(nvimDir, "testdata", script)))
	cmd.Env = append(cmd.Env, append(env, "RT_OUT="+out, "RT_SYNC="+dir)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timeout := time.After(nvimTimeout)
	for waiting := true; waiting; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("nvim: %v\n%s", err, stderr.String())
			}
			waiting = false
		case <-timeout:
			cmd.Process.Kill()
			<-done
			t.Fatalf("nvim killed after %v\n%s", nvimTimeout, stderr.String())
		case <-time.After(20 * time.Millisecond):
			for name, check := range steps {
				data, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					continue
				}
				delete(steps, name)
				check(data)
				if err := os.WriteFile(filepath.Join(dir, name+".ack"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("nvim wrote no result: %v\n%s", err, stderr.String())
	}
	if err := json.Unmarshal(b, res); err != nil {
		t.Fatalf("reading nvim's result %s: %v", b, err)
	}
	if testing.Verbose() {
		t.Logf("%s wrote %s", script, b)
	}
	for name := range steps {
		t.Errorf("the script never reached step %s", name)
	}
}

// TestNeovimContract checks the plugin's lists (lua/riptrace/contract.lua)
// against the Go side, and that the help file documents every entry.
func TestNeovimContract(t *testing.T) {
	t.Parallel()
	cmd := nvimCommand(t, "-c", `lua io.stdout:write(vim.fn.json_encode(require("riptrace.contract")))`, "-c", "qa!")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("nvim: %v\n%s", err, stderr.String())
	}
	type entry struct {
		Name, Type string
		Enum       []string
	}
	var contract struct {
		Adapter    string
		Attributes []entry
		Commands   map[string]string
		Settings   []entry
	}
	if err := json.Unmarshal(b, &contract); err != nil {
		t.Fatalf("reading the contract %q: %v", b, err)
	}
	var attrs, settings []entry
	for _, a := range dap.AttachAttributes {
		attrs = append(attrs, entry{a.Name, a.Type, a.Enum})
	}
	for _, s := range lsp.Settings {
		settings = append(settings, entry{s.Name, s.Type, s.Enum})
	}
	var cmds, plugin []string
	for _, c := range lsp.Commands {
		cmds = append(cmds, c.Name)
	}
	for _, c := range contract.Commands {
		plugin = append(plugin, c)
	}
	slices.Sort(cmds)
	slices.Sort(plugin)
	if !reflect.DeepEqual(contract.Attributes, attrs) {
		t.Errorf("contract.lua attributes drifted from dap.AttachAttributes:\n lua: %v\n Go:  %v", contract.Attributes, attrs)
	}
	if !reflect.DeepEqual(contract.Settings, settings) {
		t.Errorf("contract.lua settings drifted from lsp.Settings:\n lua: %v\n Go:  %v", contract.Settings, settings)
	}
	if !reflect.DeepEqual(plugin, cmds) {
		t.Errorf("contract.lua commands drifted from lsp.Commands:\n lua: %v\n Go:  %v", plugin, cmds)
	}
	if contract.Adapter != "riptrace" {
		t.Errorf("adapter %q, want riptrace (the debug type of docs/DESIGN.md)", contract.Adapter)
	}

	doc, err := os.ReadFile(filepath.Join(nvimDir, "doc", "riptrace.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range append(attrs, settings...) {
		if !bytes.Contains(doc, []byte("`"+e.Name+"`")) {
			t.Errorf("doc/riptrace.txt does not document %q (as `%s`)", e.Name, e.Name)
		}
	}
	for _, c := range cmds {
		if !bytes.Contains(doc, []byte(c)) {
			t.Errorf("doc/riptrace.txt does not mention the command %s", c)
		}
	}
}

// TestNeovimHelp generates the help tags of doc/riptrace.txt the way
// plugin managers do, and expects no error and the documented tags.
func TestNeovimHelp(t *testing.T) {
	t.Parallel()
	doc := filepath.Join(t.TempDir(), "doc")
	if err := os.Mkdir(doc, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(nvimDir, "doc", "riptrace.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(doc, "riptrace.txt"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := nvimCommand(t, "-c", "try | helptags "+doc+" | catch | echoerr v:exception | cquit 1 | endtry", "-c", "qa!")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil || strings.TrimSpace(stderr.String()) != "" {
		t.Fatalf(":helptags %s: %v\n%s", doc, err, stderr.String())
	}
	tags, err := os.ReadFile(filepath.Join(doc, "tags"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(string(tags)), "\n") {
		names = append(names, strings.SplitN(l, "\t", 2)[0])
	}
	for _, want := range []string{"riptrace.txt", "riptrace", "riptrace-setup", "riptrace-dap", ":RipTraceToggle", ":RipTraceHits", ":RipTraceHosts"} {
		if !slices.Contains(names, want) {
			t.Errorf("no help tag %s; tags: %v", want, names)
		}
	}
	// Every |link| points at a tag of this file or of Neovim's own help.
	for _, m := range regexp.MustCompile(`\|([^| \t]+)\|`).FindAllStringSubmatch(string(src), -1) {
		if strings.HasPrefix(m[1], "riptrace") || strings.HasPrefix(m[1], ":RipTrace") {
			if !slices.Contains(names, m[1]) {
				t.Errorf("doc/riptrace.txt links |%s|, which is no tag", m[1])
			}
		}
	}
}

// TestNeovimSetup: without nvim-dap and without a fleet, setup() succeeds
// and registers no adapter, bad options get a message saying what to
// change, the language server attaches to a Go buffer, and the commands
// say what is missing.
func TestNeovimSetup(t *testing.T) {
	t.Parallel()
	bin := agenttest.BuildTarget(t, "../cmd/riptrace")
	var r struct {
		Error    string
		Commands []string
		Bad      []struct {
			OK  bool
			Msg string
		}
		SetupEmpty        bool
		Setup             bool
		Dap               bool
		DapLoaded         bool
		Settings          map[string]any
		Attached          string
		ToggleBeforeSetup string
		ToggleWithoutNats string
		Health            string
		Root              string
	}
	runScript(t, "setup.lua", []string{"RT_BIN=" + bin, "RT_NATS=nats://127.0.0.1:1", "RT_FILE=" + absDir(t, filepath.Join(loopDir, "main.go"))}, &r, nil)
	if r.Error != "" {
		t.Fatalf("script failed: %s", r.Error)
	}
	for _, c := range []string{"RipTraceToggle", "RipTraceHits", "RipTraceHosts"} {
		if !slices.Contains(r.Commands, c) {
			t.Errorf("plugin/riptrace.lua did not define :%s", c)
		}
	}
	if !strings.Contains(r.ToggleBeforeSetup, `require("riptrace").setup()`) {
		t.Errorf(":RipTraceToggle before setup() said %q, want it to say to call setup()", r.ToggleBeforeSetup)
	}
	wantBad := []string{"hosts must be a list", `unknown option "bogus"; it takes backend, capture`, "maxHitsPerSecond must be an integer", "capture must be a table with keys", "takes a table of options", `backend must be one of "auto", "ebpf", "delve", got "gdb"`}
	if len(r.Bad) != len(wantBad) {
		t.Fatalf("bad options: %+v", r.Bad)
	}
	for i, b := range r.Bad {
		if b.OK || !strings.Contains(b.Msg, wantBad[i]) {
			t.Errorf("bad options #%d: setup() = %v, %q; want false and a message with %q", i, b.OK, b.Msg, wantBad[i])
		}
	}
	if !r.SetupEmpty {
		t.Error("setup() with no settings failed")
	}
	if !r.Setup || r.Dap || r.DapLoaded {
		t.Errorf("setup() without nvim-dap = %v, registered the adapter: %v, loaded a dap module: %v; want true, false, false", r.Setup, r.Dap, r.DapLoaded)
	}
	if want := map[string]any{"nats": "nats://127.0.0.1:1", "hosts": []any{"web-*"}}; !reflect.DeepEqual(r.Settings, want) {
		t.Errorf("language server settings %v, want %v (one host glob becomes a list)", r.Settings, want)
	}
	if r.Attached != "riptrace" {
		t.Errorf("client attached to the Go buffer: %q, want riptrace", r.Attached)
	}
	if want := absDir(t, ".."); r.Root != want {
		t.Errorf("the server's root directory is %q, want %q (where go.mod is)", r.Root, want)
	}
	if !strings.Contains(r.ToggleWithoutNats, "not connected to NATS at nats://127.0.0.1:1") {
		t.Errorf(":RipTraceToggle without NATS said %q, want the server's reason", r.ToggleWithoutNats)
	}
	for _, want := range []string{"OK: " + bin + ": riptrace ", "ERROR: " + bin + " hosts --json: riptrace: connecting to NATS at nats://127.0.0.1:1", "INFO: nvim-dap is not installed"} {
		if !strings.Contains(r.Health, want) {
			t.Errorf(":checkhealth riptrace lacks %q:\n%s", want, r.Health)
		}
	}
}

// TestNeovimFleet runs the plugin against a real fleet: an in-process
// nats-server, a real agent with the Delve backend, the loop target. It
// declares the tracepoint with :RipTraceToggle and expects hits to show
// in the buffer.
func TestNeovimFleet(t *testing.T) {
	t.Parallel()
	bin := agenttest.BuildTarget(t, "../cmd/riptrace")
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	host := "nvim-host"
	exe := fmt.Sprintf("nvim-test-%d", os.Getpid())
	src := absDir(t, filepath.Join(loopDir, "main.go"))
	line := agenttest.MarkerLine(t, src, "process")
	target := agenttest.Start(t, agenttest.Alias(t, agenttest.BuildTarget(t, loopDir), exe))
	agenttest.RunAgent(t, s, agent.Config{Host: host, Processes: []string{exe}}, nil)
	// The pickers list the hosts with a heartbeat and the target.
	testsupport.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hosts, err := c.Hosts(ctx)
		if err != nil {
			return err
		}
		for _, h := range hosts {
			if h.Name == host && !h.Gone && h.Profile != nil && slices.ContainsFunc(h.Profile.Processes, func(p fleet.Process) bool { return p.Pid == target.Pid }) {
				return nil
			}
		}
		return fmt.Errorf("%s with pid %d not among the live hosts: %+v", host, target.Pid, hosts)
	})

	var declared string // the tracepoint's id
	steps := map[string]func(json.RawMessage){
		"declared": func(json.RawMessage) {
			specs := tracepoints(t, c)
			if len(specs) != 1 {
				t.Errorf("after :RipTraceToggle the bucket holds %d tracepoints, want 1: %+v", len(specs), specs)
				return
			}
			sp := specs[0]
			declared = sp.ID
			if sp.Location.Line != line || !strings.HasSuffix(sp.Location.Path, "loop/main.go") {
				t.Errorf("declared at %s:%d, want loop/main.go:%d", sp.Location.Path, sp.Location.Line, line)
			}
			if want := (fleet.Selector{Hosts: []string{host}, Processes: []string{exe}}); !reflect.DeepEqual(sp.Selector, want) {
				t.Errorf("declared for %+v, want %+v (the host :RipTraceHosts picked, the processes of setup())", sp.Selector, want)
			}
		},
		"removed": func(json.RawMessage) {
			if specs := tracepoints(t, c); len(specs) != 0 {
				t.Errorf("after the second :RipTraceToggle the bucket still holds %+v", specs)
			}
		},
	}

	var r struct {
		Error   string
		Dap     bool
		Adapter struct {
			Type    string
			Command string
			Args    []string
		}
		Configurations []map[string]any
		HostsReturns   string
		DapHosts       []string
		CancelAborts   bool
		Attached       string
		HostsNote      string
		Offered        []struct {
			Prompt string
			Items  []string
		}
		Tracing    string
		Signs      []struct{ Lnum int }
		Lens       string
		LensText   string
		HintText   string
		Features   map[string]bool
		Hits       string
		LensRun    string
		Stopped    string
		SignsAfter []any
		Health     string
	}
	runScript(t, "fleet.lua", []string{
		"RT_BIN=" + bin, "RT_NATS=" + s.ClientURL(), "RT_FILE=" + src, fmt.Sprintf("RT_LINE=%d", line-1),
		"RT_HOST=" + host, "RT_EXE=" + exe,
	}, &r, steps)
	if r.Error != "" {
		t.Fatalf("script failed: %s", r.Error)
	}

	// nvim-dap's tables.
	if !r.Dap || r.Adapter.Type != "executable" || r.Adapter.Command != bin || !slices.Equal(r.Adapter.Args, []string{"dap"}) {
		t.Errorf("adapter %+v (registered: %v), want executable %s dap", r.Adapter, r.Dap, bin)
	}
	if len(r.Configurations) != 1 {
		t.Fatalf("dap.configurations.go = %v, want one configuration", r.Configurations)
	}
	want := map[string]any{
		"type": "riptrace", "request": "attach", "name": "RipTrace: attach to fleet", "cwd": "${workspaceFolder}",
		"nats": s.ClientURL(), "processes": []any{exe}, "capture": map[string]any{"args": true, "locals": true},
		"hosts": "<function>",
	}
	if !reflect.DeepEqual(r.Configurations[0], want) {
		t.Errorf("configuration\n %v\nwant\n %v", r.Configurations[0], want)
	}
	for k := range r.Configurations[0] {
		if !slices.ContainsFunc(dap.AttachAttributes, func(a dap.Attribute) bool { return a.Name == k }) && k != "type" && k != "request" && k != "name" {
			t.Errorf("configuration attribute %q is not one of dap.AttachAttributes", k)
		}
	}
	if r.HostsReturns != "thread" || !slices.Equal(r.DapHosts, []string{host}) {
		t.Errorf("hosts() returned a %s that resumed nvim-dap with %v, want a thread and [%s]", r.HostsReturns, r.DapHosts, host)
	}
	if !r.CancelAborts {
		t.Error("cancelling the host picker did not resume nvim-dap with dap.ABORT")
	}

	// The pickers listed the live host and its process, from `riptrace hosts --json`.
	wantItem := fmt.Sprintf("%s  1 Go process: %s[%d]", host, exe, target.Pid)
	if len(r.Offered) != 2 {
		t.Errorf("%d pickers shown, want 2 (nvim-dap's hosts, :RipTraceHosts): %+v", len(r.Offered), r.Offered)
	}
	for _, o := range r.Offered {
		if !slices.Equal(o.Items, []string{wantItem, "all hosts"}) {
			t.Errorf("picker %q offered %q, want [%q, \"all hosts\"]", o.Prompt, o.Items, wantItem)
		}
	}

	// The language server, :RipTraceHosts and :RipTraceToggle.
	if r.Attached != "riptrace" || !strings.Contains(r.HostsNote, host) {
		t.Errorf("attached %q; :RipTraceHosts said %q", r.Attached, r.HostsNote)
	}
	if declared == "" || !strings.Contains(r.Tracing, "loop/main.go:"+fmt.Sprint(line)+" with the auto backend") {
		t.Errorf(":RipTraceToggle said %q (declared %q), want tracing loop/main.go:%d with the auto backend", r.Tracing, declared, line)
	}
	if len(r.Signs) != 1 || r.Signs[0].Lnum != line {
		t.Errorf("signs after :RipTraceToggle %+v, want one on line %d", r.Signs, line)
	}

	// What the hits brought.
	t.Logf("lens %q, hints %q", r.Lens, r.HintText)
	lensRE := regexp.MustCompile(`^● \d+ hits? · 1 host · last \d+s ago$`)
	if !lensRE.MatchString(r.Lens) {
		t.Errorf("code lens %q, want ● N hits · 1 host · last Ns ago", r.Lens)
	}
	if !lensRE.MatchString(r.LensText) {
		t.Errorf("code lens virtual text %q, want ● N hits · 1 host · last Ns ago", r.LensText)
	}
	if !r.Features["inlay_hints"] && !regexp.MustCompile(`\bn=\d+\b`).MatchString(r.HintText) {
		t.Errorf("without inlay hints, the virtual text of the line is %q, want the last values with n=<int>", r.HintText)
	}
	if !strings.Contains(r.Hits, host) || !strings.Contains(r.Hits, exe) {
		t.Errorf(":RipTraceHits showed %q, want the hits of %s on %s", r.Hits, exe, host)
	}
	if !strings.Contains(r.LensRun, host) || !strings.Contains(r.LensRun, exe) {
		t.Errorf("running the code lens showed %q, want the hits of %s on %s", r.LensRun, exe, host)
	}
	if !strings.Contains(r.Stopped, "loop/main.go:"+fmt.Sprint(line)) || len(r.SignsAfter) != 0 {
		t.Errorf("the second :RipTraceToggle said %q and left signs %v", r.Stopped, r.SignsAfter)
	}
	for _, want := range []string{"OK: 1 live host: " + host, `OK: nvim-dap: adapter "riptrace"`} {
		if !strings.Contains(r.Health, want) {
			t.Errorf(":checkhealth riptrace lacks %q:\n%s", want, r.Health)
		}
	}
}

func tracepoints(t *testing.T, c *fleet.Client) []fleet.Spec {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	specs, err := c.Tracepoints(ctx)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("listing tracepoints: %v", err)
	}
	return specs
}

// TestNeovimHitsView runs a debug session through the stand-in nvim-dap
// module (testdata/dap) against a real `riptrace dap`, fleet and target, and
// the hits views of the plugin on it: the quickfix and location lists, the
// tree and the timeline, each opening a hit as a snapshot (the timeline on
// <CR> and on a double click), and :RipTraceSnapshot on the traced line;
// the backend chosen in setup() reaches the breakpoint.
func TestNeovimHitsView(t *testing.T) {
	t.Parallel()
	bin := agenttest.BuildTarget(t, "../cmd/riptrace")
	s := fleettest.RunServer(t)
	host := "nvim-hits"
	exe := fmt.Sprintf("nvim-hits-%d", os.Getpid())
	src := absDir(t, filepath.Join(loopDir, "main.go"))
	line := agenttest.MarkerLine(t, src, "process")
	target := agenttest.Start(t, agenttest.Alias(t, agenttest.BuildTarget(t, loopDir), exe))
	agenttest.RunAgent(t, s, agent.Config{Host: host, Processes: []string{exe}}, nil)

	var r struct {
		Error           string
		BackendInConfig string
		Verified        string
		QfTitle         string
		Qf              []struct {
			Lnum int
			File string
			Text string
		}
		Tree            []string
		TreeHit         string
		TreeStopped     string
		Timeline        []string
		TimelineStopped string
		TimelineJump    struct {
			File string
			Line int
		}
		ClickStopped string
		ClickJump    struct {
			File string
			Line int
		}
		LlTitle         string
		Ll              int
		SnapshotStopped string
		LensStopped     string
		TimelineGrew    bool
	}
	runScript(t, "hits.lua", []string{"RT_BIN=" + bin, "RT_NATS=" + s.ClientURL(), "RT_HOST=" + host, "RT_EXE=" + exe,
		"RT_FILE=" + src, "RT_LINE=" + strconv.Itoa(line), "RT_ROOT=" + absDir(t, "..")}, &r, nil)
	if r.Error != "" {
		t.Fatalf("script failed: %s", r.Error)
	}
	if r.BackendInConfig != "delve" || !strings.Contains(r.Verified, fmt.Sprintf("%s %s[%d] via delve", host, exe, target.Pid)) {
		t.Errorf("backend in the configuration %q, verified message %q: want delve, named", r.BackendInConfig, r.Verified)
	}
	if r.QfTitle != "RipTrace hits" || len(r.Qf) == 0 {
		t.Fatalf("quickfix %q with %d items, want RipTrace hits", r.QfTitle, len(r.Qf))
	}
	for _, it := range r.Qf {
		if it.File != src || it.Lnum != line || !strings.Contains(it.Text, fmt.Sprintf("%s %s[%d]", host, exe, target.Pid)) || !strings.Contains(it.Text, "n=") {
			t.Errorf("quickfix item %+v, want %s:%d with the process and its values", it, src, line)
		}
	}
	want := []*regexp.Regexp{
		regexp.MustCompile(fmt.Sprintf(`^● main\.go:%d  \d+ hits · installed on 1 of 1 processes .*via delve`, line)),
		regexp.MustCompile(fmt.Sprintf(`^  %s %s\[%d\]  \d+ hits?$`, host, exe, target.Pid)),
		regexp.MustCompile(`^    #\d+(\.\d+)? \d\d:\d\d:\d\d\.\d{3}( \[late\]| \[order uncertain\])?  .*n=`), // seq, or seq.part in a batch
	}
	if len(r.Tree) < 3 {
		t.Fatalf("tree %q, want a breakpoint, a process and hits", r.Tree)
	}
	for i, re := range want {
		if !re.MatchString(r.Tree[i]) {
			t.Errorf("tree line %d %q, want it to match %s", i+1, r.Tree[i], re)
		}
	}
	if !strings.Contains(r.TreeStopped, "Snapshot of hit #") {
		t.Errorf("<CR> on %q in the tree: stopped %q, want a snapshot of that hit", r.TreeHit, r.TreeStopped)
	}
	// Grouped by the item's id: a line names each request, and each hit
	// under it says it belongs to it.
	request := regexp.MustCompile(`^── request (book|lamp|pen) ──$`)
	if len(r.Timeline) < 3 || !request.MatchString(r.Timeline[0]) {
		t.Errorf("timeline %q, want a line naming the first hit's request", r.Timeline)
	}
	group := ""
	number := regexp.MustCompile(`  #([\d.]+) `)
	shown := map[string]bool{} // a hit's number: refreshes that overlap must not add a hit twice
	for _, l := range r.Timeline {
		if m := number.FindStringSubmatch(l); m != nil {
			if shown[m[1]] {
				t.Errorf("timeline shows hit #%s twice", m[1])
			}
			shown[m[1]] = true
		}
		if m := request.FindStringSubmatch(l); m != nil {
			group = m[1]
		} else if !strings.HasPrefix(l, fmt.Sprintf("main.go:%d  #", line)) || !strings.Contains(l, "[request "+group+"]") || !strings.Contains(l, fmt.Sprintf("it.ID=%q", group)) {
			t.Errorf("timeline row %q, want a hit of main.go:%d in request %s", l, line, group)
		}
	}
	if r.TimelineStopped == "" || r.TimelineJump.File != src || r.TimelineJump.Line != line {
		t.Errorf("<CR> in the timeline: stopped %q, cursor at %+v; want a snapshot and %s:%d", r.TimelineStopped, r.TimelineJump, src, line)
	}
	if r.ClickStopped == "" || r.ClickJump.File != src || r.ClickJump.Line != line {
		t.Errorf("a double click in the timeline: stopped %q, cursor at %+v; want a snapshot of that row's hit and %s:%d", r.ClickStopped, r.ClickJump, src, line)
	}
	if r.LlTitle != "RipTrace hits" || r.Ll == 0 {
		t.Errorf(":RipTraceHitsList! filled the location list %q with %d items, want RipTrace hits", r.LlTitle, r.Ll)
	}
	if r.SnapshotStopped == "" {
		t.Error(":RipTraceSnapshot on the traced line opened no snapshot")
	}
	if !strings.Contains(r.LensStopped, "Snapshot of hit #") {
		t.Errorf("running the code lens during the session stopped %q, want a snapshot of the line's latest hit", r.LensStopped)
	}
	if !r.TimelineGrew {
		t.Error("the timeline buffer did not grow as hits came")
	}
	if !target.Alive() {
		t.Error("the target died")
	}
}
