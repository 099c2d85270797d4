package main_test

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/scenario"
)

// example copies an example scenario into a temporary directory, its
// services pointed at demo services built for the test and its files at
// the repository's demo sources.
func example(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "scenarios", name))
	if err != nil {
		t.Fatal(err)
	}
	demo, err := filepath.Abs(filepath.Join("..", "..", "demo"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "../../demo/", demo+"/")
	for _, svc := range []string{"gateway", "orders", "payments"} {
		text = strings.ReplaceAll(text, "../../bin/"+svc, agenttest.BuildTarget(t, filepath.Join(demo, svc)))
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRunExitCodes runs the passing and the failing examples through the
// binary: the exit code, the summary, the JUnit report and the JSON.
func TestRunExitCodes(t *testing.T) {
	pass, fail := example(t, "checkout.yaml"), example(t, "checkout-fails-where.yaml")
	junit := filepath.Join(t.TempDir(), "junit.xml")

	r := run(t, 3*time.Minute, "run", "--junit", junit, pass, fail)
	if r.code != 1 {
		t.Fatalf("want exit 1 with a failing scenario, got %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"✓ checkout count == 4", "PASS checkout in", "✗ where: every charge is below 100 EUR", "FAIL checkout-fails-where in", "req.Amount=809.1"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the summary does not say %q:\n%s", want, r.stdout)
		}
	}
	var report struct {
		Suites []struct {
			Name     string `xml:"name,attr"`
			Tests    int    `xml:"tests,attr"`
			Failures int    `xml:"failures,attr"`
		} `xml:"testsuite"`
	}
	b, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(b, &report); err != nil {
		t.Fatalf("the JUnit report does not parse: %v\n%s", err, b)
	}
	if len(report.Suites) != 2 || report.Suites[0].Tests != 6 || report.Suites[0].Failures != 0 || report.Suites[1].Tests != 1 || report.Suites[1].Failures != 1 {
		t.Errorf("want suites of 6 tests passing and 1 failing, got %+v", report.Suites)
	}

	recordings := t.TempDir()
	r = run(t, 3*time.Minute, "run", "--json", "--record", recordings, pass)
	var results []scenario.Result
	if err := json.Unmarshal([]byte(r.stdout), &results); err != nil || r.code != 0 {
		t.Fatalf("want exit 0 and JSON results, got %d, %v:\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if len(results) != 1 || !results[0].OK() || results[0].Hits != 12 {
		t.Errorf("want one passing result over 12 hits, got %+v", results)
	}
	recording := filepath.Join(recordings, "checkout.hits.jsonl")
	if !strings.Contains(r.stderr, "recorded 12 hits in "+recording) {
		t.Errorf("the run does not say where it recorded the hits:\n%s", r.stderr)
	}

	// riptrace timeline prints the recording, in the order the hits ran.
	r = run(t, time.Minute, "timeline", "--recording", recording, "--json")
	var last time.Time
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var p struct {
			Tracepoint      string    `json:"tracepoint"`
			CoordinatedTime time.Time `json:"coordinatedTime"`
		}
		if err := json.Unmarshal([]byte(line), &p); err != nil || p.Tracepoint == "" {
			t.Fatalf("timeline --recording: %v in %q\n%s", err, line, r.stderr)
		}
		if p.CoordinatedTime.Before(last) {
			t.Errorf("timeline --recording: %s at %v after a hit at %v", p.Tracepoint, p.CoordinatedTime, last)
		}
		last = p.CoordinatedTime
		n++
	}
	if n != 12 || r.code != 0 {
		t.Errorf("timeline --recording printed %d hits (exit %d), want 12", n, r.code)
	}
	if r = run(t, time.Minute, "timeline", "--recording", recording, "--tracepoint", "charge"); strings.Count(r.stdout, "main.charge") != 4 {
		t.Errorf("timeline --recording --tracepoint charge: want 4 charges, got:\n%s%s", r.stdout, r.stderr)
	}

	// The failing examples, replayed over the recording, fail as they do
	// live, each saying why, and nothing is started: the services'
	// programs are gone.
	replayed := []string{"run", "--replay", recording, pass}
	for _, kind := range []string{"count", "where", "never", "order", "within"} {
		b, err := os.ReadFile(example(t, "checkout-fails-"+kind+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		gone := filepath.Join(t.TempDir(), "fails-"+kind+"-without-services.yaml")
		text := regexp.MustCompile(`command: \S+`).ReplaceAllString(string(b), "command: /nonexistent/service")
		if err := os.WriteFile(gone, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		replayed = append(replayed, gone)
	}
	r = run(t, time.Minute, replayed...)
	if r.code != 1 {
		t.Fatalf("want exit 1 replaying failing expectations, got %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"PASS checkout in", "replayed 12 hits of scenario checkout",
		"✗ count: five checkouts (there were four): 4 hits, want == 5", "FAIL checkout-fails-count in",
		"✗ where: every charge is below 100 EUR (the laptop is not): 1 of 4 hits broke it", "req.Amount=809.1", "FAIL checkout-fails-where in",
		"✗ never: no charge at all (there were four): hit 4 times", `masked="**** 0341"`, "FAIL checkout-fails-never in",
		"✗ order: checkout before price (it is the other way round): out of order or incomplete in 4 of 4 requests", "price came before checkout", "FAIL checkout-fails-order in",
		"✗ within: the charge within a microsecond of the price: broken in 4 of 4 requests", "after price, want within 1µs", "FAIL checkout-fails-within in"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the replay's summary does not say %q:\n%s", want, r.stdout)
		}
	}
	if r = run(t, time.Minute, "run", "--replay", recording, "--record", recordings, pass); r.code != 2 || !strings.Contains(r.stderr, "--replay evaluates a recording once") {
		t.Errorf("want --replay with --record refused (exit 2), got %d:\n%s", r.code, r.stderr)
	}
}

// TestRunMalformed checks that a malformed file is a usage error naming
// its position, and that nothing is started for it.
func TestRunMalformed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte("services:\n  - name: a\n    comand: ./a\n"), 0o644)
	r := run(t, time.Minute, "run", path)
	if r.code != 2 || !strings.Contains(r.stderr, path+":3:5: services[0]: unknown key \"comand\": did you mean command?") {
		t.Errorf("want exit 2 and the position, got %d:\n%s", r.code, r.stderr)
	}
}

// TestRunCredentials joins a fleet whose NATS server wants a token: --nats
// makes a scenario without fleet join it, --token (or the file's token)
// gets in, and without one the run fails saying why.
func TestRunCredentials(t *testing.T) {
	t.Parallel()
	url := tokenNATS(t)
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.yaml")
	os.WriteFile(plain, []byte("steps:\n  - sh: \"true\"\n"), 0o644)
	inFile := filepath.Join(dir, "in-file.yaml")
	os.WriteFile(inFile, []byte("fleet: {nats: \""+url+"\", token: s3cret}\nsteps:\n  - sh: \"true\"\n"), 0o644)

	if r := run(t, time.Minute, "run", "--nats", url, plain); r.code != 1 || !strings.Contains(r.stdout, "✗ run: joining the fleet at "+url) || !strings.Contains(r.stdout, "Authorization Violation") {
		t.Errorf("without a token: want exit 1 naming the authorization violation, got %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, args := range [][]string{{"--nats", url, "--token", "s3cret", plain}, {inFile}} {
		if r := run(t, time.Minute, append([]string{"run"}, args...)...); r.code != 0 || !strings.Contains(r.stdout, "PASS plain") && !strings.Contains(r.stdout, "PASS in-file") {
			t.Errorf("run %v: want exit 0, got %d:\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	if r := run(t, time.Minute, "run", "--nats", url, "--tls-cert", "c.pem", plain); r.code != 2 || !strings.Contains(r.stderr, "--tls-cert") {
		t.Errorf("a certificate without its key: want a usage error naming --tls-cert, got %d:\n%s", r.code, r.stderr)
	}
}

// TestRunRepeat runs a scenario twice on the embedded fleet: a summary and
// a JUnit suite per run, each named by its number, and a progress line
// per phase on stderr; --repeat 0 is a usage error.
func TestRunRepeat(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "twice.yaml")
	os.WriteFile(file, []byte("steps:\n  - sh: \"echo ran >> "+filepath.Join(dir, "log")+"\"\n"), 0o644)
	junit := filepath.Join(dir, "junit.xml")
	r := run(t, 2*time.Minute, "run", "--repeat", "2", "--junit", junit, file)
	if r.code != 0 || !strings.Contains(r.stdout, "PASS twice#1 in") || !strings.Contains(r.stdout, "PASS twice#2 in") {
		t.Errorf("want exit 0 and two passing runs, got %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"==> starting the fleet and 0 services", "==> running 1 steps", "==> step 1 of 1"} {
		if strings.Count(r.stderr, want) != 2 {
			t.Errorf("want the progress line %q once per run:\n%s", want, r.stderr)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "log")); err != nil || string(b) != "ran\nran\n" {
		t.Errorf("the step ran %q (%v), want twice", b, err)
	}
	if b, err := os.ReadFile(junit); err != nil || strings.Count(string(b), "<testsuite ") != 2 || !strings.Contains(string(b), `name="twice#2"`) {
		t.Errorf("want a JUnit suite per run (%v):\n%s", err, b)
	}
	if r := run(t, time.Minute, "run", "--repeat", "0", file); r.code != 2 || !strings.Contains(r.stderr, "--repeat 0: run each scenario 1 or more times") {
		t.Errorf("--repeat 0: want a usage error, got %d:\n%s", r.code, r.stderr)
	}
}
