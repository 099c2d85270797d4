package main_test

import (
	"os"
	"strings"
	"testing"

	"github.com/riptrace/riptrace/fleet"
)

const deployDir = "../../deploy"

// deployUsers are the users of deploy/nats.conf: one editor, and the
// agents of two example hosts. Their passwords come from the environment of
// the NATS server.
var deployUsers = []fleet.AuthUser{
	{Name: "editor", Password: "$RIPTRACE_EDITOR_PASSWORD"},
	{Name: "agent-node-1", Password: "$RIPTRACE_AGENT_NODE_1_PASSWORD", Host: "node-1"},
	{Name: "agent-node-2", Password: "$RIPTRACE_AGENT_NODE_2_PASSWORD", Host: "node-2"},
}

const deployNATSHeader = `# NATS server configuration for RipTrace, with the permission layout of
# README "Auth and permissions": an agent serves only its own host's
# requests and publishes only its own host's hits, status and heartbeat; an
# editor/CLI user sends requests, declares tracepoints and reads hits, and
# cannot answer as an agent.
#
#   riptrace server --config nats.conf
#
# Passwords are read from the server's environment. Add one agent user per
# host (the name given to riptrace agent --host).
#
# Each user receives replies only under an inbox prefix of its own,
# _INBOX_<user>, and may not read anyone else's: run every client of a user
# with --inbox-prefix _INBOX_<user> (or $RIPTRACE_INBOX_PREFIX), as the
# comment above the user says.
#
# Generated from fleet.Subjects.AuthConfig by
#   RIPTRACE_UPDATE_DEPLOY=1 go test ./cmd/riptrace -run TestDeployNATSConfig

listen: 0.0.0.0:4222

jetstream {
  store_dir: /var/lib/riptrace
}

`

// TestDeployNATSConfig: deploy/nats.conf is what fleet's permission layout
// generates (RIPTRACE_UPDATE_DEPLOY=1 rewrites it).
func TestDeployNATSConfig(t *testing.T) {
	t.Parallel()
	want := deployNATSHeader + fleet.NewSubjects("").AuthConfig(deployUsers)
	path := deployDir + "/nats.conf"
	if os.Getenv("RIPTRACE_UPDATE_DEPLOY") != "" {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s differs from fleet's permission layout; regenerate it with RIPTRACE_UPDATE_DEPLOY=1 go test ./cmd/riptrace -run TestDeployNATSConfig\n--- want:\n%s", path, want)
	}
	if !strings.Contains(want, `"riptrace.node-1.hits.*"`) {
		t.Errorf("the agent of node-1 may not publish its hits:\n%s", want)
	}
	if strings.Contains(want, `"_INBOX.>"`) || !strings.Contains(want, `"_INBOX_editor.>"`) {
		t.Errorf("the users do not each have an inbox of their own:\n%s", want)
	}
}
