package main_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// The files in deploy/ are checked here as far as they can be offline:
// the Kubernetes manifests decode strictly into the API's types and ask for
// exactly the capabilities the agent needs; the systemd units pass
// systemd-analyze verify (where installed) and a parse of their keys; every
// riptrace command line in them names a real subcommand and real flags of
// the built binary. deploy/nats.conf is loaded by a real server in
// TestAuthLayout and matches fleet's layout (TestDeployNATSConfig).

// cliFlags returns the flags of `riptrace sub`, from its help, and whether
// each takes a value.
func cliFlags(t *testing.T, sub string) map[string]bool {
	t.Helper()
	r := run(t, cmdTimeout, sub, "--help")
	if !strings.Contains(r.stderr, "Usage: riptrace "+sub) {
		t.Fatalf("riptrace %s --help does not show its usage: is %q a subcommand?\n%s", sub, sub, r.stderr)
	}
	flags := make(map[string]bool)
	for line := range strings.Lines(r.stderr) {
		rest, ok := strings.CutPrefix(line, "  -")
		if !ok {
			continue
		}
		rest = strings.TrimRight(rest, "\n")
		i := strings.IndexAny(rest, " \t")
		if i < 0 {
			flags[rest] = false
			continue
		}
		flags[rest[:i]] = rest[i] == ' '
	}
	if len(flags) == 0 {
		t.Fatalf("no flags in riptrace %s --help:\n%s", sub, r.stderr)
	}
	return flags
}

// checkCommandLine checks that args (after the binary) are a riptrace
// subcommand with flags it has, each value-taking flag followed by a value.
// It returns the flags given, with their values.
func checkCommandLine(t *testing.T, where string, args []string) map[string]string {
	t.Helper()
	if len(args) == 0 {
		t.Errorf("%s: no riptrace subcommand", where)
		return nil
	}
	flags := cliFlags(t, args[0])
	given := make(map[string]string)
	for i := 1; i < len(args); i++ {
		name, ok := strings.CutPrefix(args[i], "--")
		if !ok {
			t.Errorf("%s: riptrace %s takes no argument %q", where, args[0], args[i])
			continue
		}
		name, value, hasValue := strings.Cut(name, "=")
		takes, known := flags[name]
		switch {
		case !known:
			t.Errorf("%s: riptrace %s has no flag --%s", where, args[0], name)
		case takes && !hasValue:
			if i+1 >= len(args) || strings.HasPrefix(args[i+1], "--") {
				t.Errorf("%s: --%s wants a value", where, name)
				continue
			}
			i++
			value = args[i]
		case !takes && hasValue:
			t.Errorf("%s: --%s takes no value", where, name)
		}
		given[name] = value
	}
	return given
}

// shippedCaps are the capabilities deploy/ grants the agent, as
// TestDeployCapabilities measures for a process of another user: SYS_PTRACE
// to attach (and read /proc/PID/exe), KILL to stop its threads,
// DAC_OVERRIDE to read its /proc/PID/auxv and for the watchdog to write back
// the code of a killed worker's breakpoints through /proc/PID/mem; BPF and
// PERFMON for the eBPF backend.
var shippedCaps = []string{"BPF", "DAC_OVERRIDE", "KILL", "PERFMON", "SYS_PTRACE"}

// wantCaps are the capabilities an agent container adds: shippedCaps, less
// BPF and PERFMON where it runs only the Delve backend.
func wantCaps(flags map[string]string) []corev1.Capability {
	caps := shippedCaps
	if flags["backend"] == "delve" {
		caps = []string{"DAC_OVERRIDE", "KILL", "SYS_PTRACE"}
	}
	var kc []corev1.Capability
	for _, c := range caps {
		kc = append(kc, corev1.Capability(c))
	}
	slices.Sort(kc)
	return kc
}

func TestDeployKubernetes(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(deployDir, "kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s/kubernetes (%v)", deployDir, err)
	}
	kinds := make(map[string]int)
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			where := fmt.Sprintf("%s document %d", filepath.Base(file), i+1)
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			var pod *corev1.PodSpec
			switch tm.Kind {
			case "DaemonSet":
				var ds appsv1.DaemonSet
				if err := decodeStrict(doc, &ds); err != nil {
					t.Fatalf("%s: %v", where, err)
				}
				pod = &ds.Spec.Template.Spec
				if !pod.HostPID {
					t.Errorf("%s: a DaemonSet agent needs hostPID: true to see the node's processes", where)
				}
				checkSelector(t, where, ds.Spec.Selector, ds.Spec.Template.Labels)
			case "Deployment":
				var d appsv1.Deployment
				if err := decodeStrict(doc, &d); err != nil {
					t.Fatalf("%s: %v", where, err)
				}
				pod = &d.Spec.Template.Spec
				if pod.ShareProcessNamespace == nil || !*pod.ShareProcessNamespace {
					t.Errorf("%s: a sidecar agent needs shareProcessNamespace: true to see the service's process", where)
				}
				checkSelector(t, where, d.Spec.Selector, d.Spec.Template.Labels)
			default:
				t.Errorf("%s: unexpected kind %q (apiVersion %q)", where, tm.Kind, tm.APIVersion)
				continue
			}
			if tm.APIVersion != "apps/v1" {
				t.Errorf("%s: apiVersion %q, want apps/v1", where, tm.APIVersion)
			}
			kinds[tm.Kind]++
			checkPod(t, where, pod)
		}
	}
	if kinds["DaemonSet"] == 0 || kinds["Deployment"] == 0 {
		t.Errorf("manifests of kinds %v; want a DaemonSet and a sidecar Deployment", kinds)
	}
}

// decodeStrict decodes a manifest as the API server does, case-sensitively,
// and fails on unknown or duplicate fields.
func decodeStrict(doc string, v any) error {
	data, err := yaml.YAMLToJSONStrict([]byte(doc))
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(data, v, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

func checkSelector(t *testing.T, where string, sel *metav1.LabelSelector, labels map[string]string) {
	t.Helper()
	if sel == nil || len(sel.MatchLabels) == 0 {
		t.Errorf("%s: no selector", where)
		return
	}
	for k, v := range sel.MatchLabels {
		if labels[k] != v {
			t.Errorf("%s: the selector's %s=%s is not a label of the pod template", where, k, v)
		}
	}
}

// checkPod checks the agent container of a pod and that no other container
// gains privileges.
func checkPod(t *testing.T, where string, pod *corev1.PodSpec) {
	t.Helper()
	volumes := make(map[string]bool)
	for _, v := range pod.Volumes {
		volumes[v.Name] = true
	}
	agents := 0
	for _, c := range pod.Containers {
		where := where + " container " + c.Name
		sc := c.SecurityContext
		if !strings.Contains(c.Image, "riptrace") {
			if sc != nil && ((sc.Privileged != nil && *sc.Privileged) || (sc.Capabilities != nil && len(sc.Capabilities.Add) > 0)) {
				t.Errorf("%s: a service container gains privileges for RipTrace's sake", where)
			}
			continue
		}
		agents++
		if !slices.Equal(c.Command, []string{"riptrace"}) {
			t.Errorf("%s: command %q, want [riptrace]", where, c.Command)
		}
		if len(c.Args) == 0 || c.Args[0] != "agent" {
			t.Errorf("%s: args %q, want riptrace agent", where, c.Args)
		}
		flags := checkCommandLine(t, where, c.Args)
		env := make(map[string]bool)
		for _, e := range c.Env {
			env[e.Name] = true
		}
		for _, a := range c.Args {
			for _, m := range regexp.MustCompile(`\$\(([A-Z_]+)\)`).FindAllStringSubmatch(a, -1) {
				if !env[m[1]] {
					t.Errorf("%s: argument %q refers to $(%s), which the container's env does not set", where, a, m[1])
				}
			}
		}
		if sc == nil || sc.Capabilities == nil {
			t.Errorf("%s: no securityContext capabilities", where)
			continue
		}
		if sc.Privileged == nil || *sc.Privileged {
			t.Errorf("%s: want privileged: false", where)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: want allowPrivilegeEscalation: false", where)
		}
		if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("%s: drops %q, want [ALL]", where, sc.Capabilities.Drop)
		}
		add := slices.Clone(sc.Capabilities.Add)
		slices.Sort(add)
		if want := wantCaps(flags); !slices.Equal(add, want) {
			t.Errorf("%s: adds %q, want exactly %q", where, add, want)
		}
		if creds := flags["creds"]; creds != "" {
			mounted := false
			for _, m := range c.VolumeMounts {
				if !volumes[m.Name] {
					t.Errorf("%s: mounts volume %q, which the pod does not have", where, m.Name)
				}
				if strings.HasPrefix(creds, strings.TrimSuffix(m.MountPath, "/")+"/") {
					mounted = true
				}
			}
			if !mounted {
				t.Errorf("%s: --creds %s is in no mounted volume", where, creds)
			}
		}
	}
	if agents != 1 {
		t.Errorf("%s: %d riptrace containers, want 1", where, agents)
	}
}

// unit is a systemd unit file: section → key → values.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := make(unit)
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = make(map[string][]string)
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value in a section: %q", path, n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// unitKeys are the keys the units may use, per section.
var unitKeys = map[string][]string{
	"Unit":    {"Description", "Documentation", "Wants", "After"},
	"Install": {"WantedBy"},
	"Service": {"Type", "ExecStart", "EnvironmentFile", "Restart", "RestartSec", "TimeoutStopSec", "KillMode",
		"User", "DynamicUser", "StateDirectory", "StateDirectoryMode", "CapabilityBoundingSet", "AmbientCapabilities",
		"NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
		"ProtectKernelModules", "ProtectControlGroups", "ProtectClock", "RestrictAddressFamilies", "RestrictNamespaces",
		"RestrictRealtime", "LockPersonality", "MemoryDenyWriteExecute"},
}

func TestDeploySystemd(t *testing.T) {
	t.Parallel()
	bin := riptraceBin(t)
	for _, tc := range []struct {
		file, sub string
		caps      string // CapabilityBoundingSet
	}{
		{"riptrace-agent.service", "agent", "CAP_SYS_PTRACE CAP_KILL CAP_DAC_OVERRIDE CAP_BPF CAP_PERFMON"},
		{"riptrace-server.service", "server", ""},
	} {
		path := filepath.Join(deployDir, "systemd", tc.file)
		u := parseUnit(t, path)
		for section, keys := range u {
			allowed, ok := unitKeys[section]
			if !ok {
				t.Errorf("%s: unknown section [%s]", tc.file, section)
			}
			for k := range keys {
				if !slices.Contains(allowed, k) {
					t.Errorf("%s: unknown key %s in [%s]", tc.file, k, section)
				}
			}
		}
		exec := u["Service"]["ExecStart"]
		if len(exec) != 1 {
			t.Fatalf("%s: %d ExecStart lines, want 1", tc.file, len(exec))
		}
		args := strings.Fields(exec[0])
		if args[0] != "/usr/local/bin/riptrace" || len(args) < 2 || args[1] != tc.sub {
			t.Errorf("%s: ExecStart %q, want /usr/local/bin/riptrace %s …", tc.file, exec[0], tc.sub)
		}
		checkCommandLine(t, tc.file, args[1:])
		if got := u["Service"]["CapabilityBoundingSet"]; !slices.Equal(got, []string{tc.caps}) {
			t.Errorf("%s: CapabilityBoundingSet %q, want exactly %q", tc.file, got, tc.caps)
		}
		if got := u["Service"]["AmbientCapabilities"]; tc.caps != "" && !slices.Equal(got, []string{tc.caps}) {
			t.Errorf("%s: AmbientCapabilities %q, want exactly %q", tc.file, got, tc.caps)
		}
		if got := u["Service"]["NoNewPrivileges"]; !slices.Equal(got, []string{"yes"}) {
			t.Errorf("%s: NoNewPrivileges %q, want yes", tc.file, got)
		}
		verifyUnit(t, path, bin)
	}
}

// verifyUnit runs systemd-analyze verify on the unit, its binary path
// pointed at the build under test; any complaint fails the test.
func verifyUnit(t *testing.T, path, bin string) {
	t.Helper()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Logf("systemd-analyze is not installed: %s checked by the parse only", path)
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(tmp, bytes.ReplaceAll(data, []byte("/usr/local/bin/riptrace"), []byte(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", tmp).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", path, err, out)
	}
}
