package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/riptrace/riptrace/agent/agenttest"
)

// TestAgentConfigFile: riptrace agent --config reads the server, the
// allow-list and the log format from a file; a flag wins over the file.
func TestAgentConfigFile(t *testing.T) {
	t.Parallel()
	url := startServer(t)
	target := startTarget(t, "config-loop")
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	yaml := fmt.Sprintf("host: file-host\nnats:\n  url: %s\nattach:\n  processes: [%q]\n  uids: [%d]\nlog:\n  json: true\n", url, exeName("config-loop"), os.Getuid())
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	agent := start(t, "agent", "--config", cfg, "--host", "flag-host")
	awaitProcesses(t, url, map[*agenttest.Proc]string{target: "flag-host"}, detached)
	agent.await(t, stateTimeout, "a JSON log line", func(_, stderr string) bool {
		return strings.Contains(stderr, `{"time":`) && strings.Contains(stderr, `"msg":"agent ready"`)
	})
}

// TestAgentConfigFileErrors: a mistake in the file stops the agent before it
// connects anywhere, with the file, the line and what to write.
func TestAgentConfigFileErrors(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(cfg, []byte("host: a\nattach:\n  uid: [1000]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(t, cmdTimeout, "agent", "--config", cfg, "--nats", "nats://127.0.0.1:1")
	want := cfg + `:3: unknown key "attach.uid": the flag --uid is written attach.uids in the file`
	if r.code != 2 || !strings.Contains(r.stderr, want) {
		t.Fatalf("agent with a bad config: exit %d, stderr:\n%s\nwant exit 2 and %q", r.code, r.stderr, want)
	}
	r = run(t, cmdTimeout, "agent", "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	if r.code != 2 || !strings.Contains(r.stderr, "missing.yaml: no such file") {
		t.Fatalf("agent with a missing config: exit %d, stderr:\n%s", r.code, r.stderr)
	}
}
