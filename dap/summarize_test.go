package dap

import (
	"strings"
	"testing"

	"github.com/riptrace/riptrace/fleet"
)

// TestSummarizePending checks how a breakpoint reads while a process is
// being attached: pending, with what it waits for, never "not installed",
// and not settled until that process answers.
func TestSummarizePending(t *testing.T) {
	proc := func(exe string) fleet.ProcessRef { return fleet.ProcessRef{Exe: exe} }
	attaching := fleet.Status{Host: "h", Pid: 1, Process: proc("orders"), State: fleet.StatePending, Message: "attaching to pid 1…"}
	refused := fleet.Status{Host: "h", Pid: 2, Process: proc("payments"), State: fleet.StateError, Message: "no source file of this program ends in main.go"}
	installed := fleet.Status{Host: "h", Pid: 3, Process: proc("orders"), State: fleet.StateInstalled, Placement: &fleet.Placement{Backend: "delve"}}
	for _, tc := range []struct {
		name     string
		statuses []fleet.Status
		verified bool
		prefix   string
		says     []string
		settled  bool
	}{
		{"attaching and refused", []fleet.Status{attaching, refused}, false, "pending for the delve backend: ", []string{"h orders[1]: pending (attaching to pid 1…)", "h payments[2]: no source file"}, false},
		{"installed and attaching", []fleet.Status{installed, attaching}, true, "installed on 1 of 2 processes (h orders[3] via delve)", []string{"h orders[1]: pending (attaching to pid 1…)"}, false},
		{"refused", []fleet.Status{refused}, false, "not installed by the delve backend: ", []string{"h payments[2]: no source file"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := make(map[string]fleet.Status)
			for _, st := range tc.statuses {
				m[fleet.StatusKey("tp", st.Host, st.Pid)] = st
			}
			verified, msg, settled := summarize(m, "delve")
			if verified != tc.verified || settled != tc.settled || !strings.HasPrefix(msg, tc.prefix) {
				t.Errorf("summarize = %v, %q, settled %v; want %v, %q…, settled %v", verified, msg, settled, tc.verified, tc.prefix, tc.settled)
			}
			for _, w := range tc.says {
				if !strings.Contains(msg, w) {
					t.Errorf("%q does not say %q", msg, w)
				}
			}
		})
	}
}
