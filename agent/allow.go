package agent

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/riptrace/riptrace/fleet"
)

// admit checks p against the attach allow-list (Config.Processes and
// Config.UIDs) and returns nil, or a *fleet.Error naming the rule that
// refuses it and where that rule was written. The uids are read afresh.
func (a *Agent) admit(p *fleet.Process) error { return a.refusal(p, true) }

// admits reports whether admit lets p in, without the cost of saying why
// not: a scan asks it of every Go process on the host, each second.
func (a *Agent) admits(p *fleet.Process) bool { return a.refusal(p, false) == nil }

// errRefused is refusal's answer when it is not asked why.
var errRefused = errors.New("outside the attach allow-list")

// refusal is admit's error, or errRefused in its place unless explain is
// set.
func (a *Agent) refusal(p *fleet.Process, explain bool) error {
	if !fleet.MatchProcess(a.cfg.Processes, p) {
		if !explain {
			return errRefused
		}
		return fleet.Errorf(fleet.CodeNotManaged, "pid %d (%s) is outside the attach allow-list: %s: add it there, or trace it with an agent that manages it",
			p.Pid, describeProcess(p, true), a.rule("processes", fmt.Sprintf("%q", a.cfg.Processes)))
	}
	if len(a.cfg.UIDs) == 0 {
		return nil
	}
	ids, err := procUIDs(p.Pid)
	if err != nil {
		if !explain {
			return errRefused
		}
		return fleet.Errorf(fleet.CodeNoProcess, "pid %d (%s): reading its uids for the attach allow-list: %v", p.Pid, p.Exe, err)
	}
	for _, id := range ids {
		if !slices.Contains(a.cfg.UIDs, id) {
			if !explain {
				return errRefused
			}
			return fleet.Errorf(fleet.CodeNotManaged, "pid %d (%s) is outside the attach allow-list: %s: add its uid there to trace it",
				p.Pid, describeProcess(p, false), a.rule("uids", fmt.Sprint(a.cfg.UIDs)))
		}
	}
	return nil
}

// describeProcess says who p runs as and what it runs, for refusals: "uid
// 1000, exe /usr/bin/x" (with the other uids when they differ, and the
// module when asked).
func describeProcess(p *fleet.Process, module bool) string {
	var parts []string
	if ids, err := procUIDs(p.Pid); err == nil {
		parts = append(parts, fmt.Sprintf("uid %d", ids[0]))
		if ids[1] != ids[0] {
			parts = append(parts, fmt.Sprintf("euid %d", ids[1]))
		}
		if ids[2] != ids[1] {
			parts = append(parts, fmt.Sprintf("saved uid %d", ids[2]))
		}
	}
	parts = append(parts, "exe "+p.Exe)
	if module && p.Module != "" {
		parts = append(parts, "module "+p.Module)
	}
	return strings.Join(parts, ", ")
}

// ruleFlags and ruleKeys name each rule as a flag and as a configuration
// file key.
var (
	ruleFlags = map[string]string{"processes": "--processes", "uids": "--uid", "deny": "--deny"}
	ruleKeys  = map[string]string{"processes": "attach.processes", "uids": "attach.uids", "deny": "deny"}
)

// rule names the rule key with its value as the operator wrote it:
// `--deny "main.*"`, or `attach.uids [1000] in /etc/riptrace/agent.yaml:9`.
func (a *Agent) rule(key, value string) string {
	src := a.cfg.RuleSources[key]
	if src == "" || strings.HasPrefix(src, "--") {
		flag := src
		if flag == "" {
			flag = ruleFlags[key]
		}
		return flag + " " + value
	}
	return fmt.Sprintf("%s %s in %s", ruleKeys[key], value, src)
}
