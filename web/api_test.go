package web_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
	"github.com/riptrace/riptrace/internal/testsupport"
	"github.com/riptrace/riptrace/web"
)

// TestUnauthorized: every request under /api/ without the token, or with
// another, is answered 401 whatever its method and path, real or not,
// and the page itself (static, no data) needs none.
func TestUnauthorized(t *testing.T) {
	t.Parallel()
	p := newPage(t, "file:///nonexistent", nil)
	paths := []string{"/api/", "/api", "/api/fleet", "/api/tracepoints", "/api/tracepoints/x", "/api/events", "/api/tree?module=a&rev=b", "/api/file", "/api/fetch", "/api/nothing/here", "/api/%2e%2e/fleet", "/api/config", "//api/fleet", "/x/../api/fleet", "/api/./tracepoints"}
	auths := []string{"", "Bearer", "Bearer ", "Bearer wrong-token-of-some-length", "bearer " + p.token, "Basic " + p.token, "Bearer " + p.token + "x", "Bearer " + p.token[:len(p.token)-1], p.token}
	for _, path := range paths {
		for _, method := range []string{"GET", "POST", "DELETE", "PUT", "OPTIONS"} {
			for _, auth := range auths {
				req, _ := http.NewRequest(method, p.hs.URL+path, strings.NewReader(`{"module":"x"}`))
				req.Header.Set("Content-Type", "application/json")
				if auth != "" {
					req.Header.Set("Authorization", auth)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("%s %s with Authorization %q: %d, want 401", method, path, auth, resp.StatusCode)
				}
			}
		}
	}
	// With the token, the same requests are routed.
	if status, body := p.do("GET", "/api/nothing/here", nil); status != http.StatusNotFound {
		t.Errorf("GET /api/nothing/here with the token: %d %s, want 404", status, body)
	}
	resp, err := http.Get(p.hs.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET / (the page): %d, want 200", resp.StatusCode)
	}
}

// TestBadBodies: malformed, unknown-field, trailing and oversized bodies,
// form posts and a missing session are refused with a code, and a
// read-only page refuses every change.
func TestBadBodies(t *testing.T) {
	t.Parallel()
	p := newPage(t, "file:///nonexistent", nil)
	post := func(path, ctype string, body []byte, session string) (int, fleet.Error) {
		req, _ := http.NewRequest("POST", p.hs.URL+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+p.token)
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("X-RipTrace-Session", session)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e struct{ Error fleet.Error }
		json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Error
	}
	rev := strings.Repeat("a", 40)
	for _, c := range []struct {
		name, ctype, body string
		session           string
		status            int
		code              string
	}{
		{"not JSON", "application/json", `{"module":`, p.sess, 400, fleet.CodeBadRequest},
		{"unknown field", "application/json", `{"module":"m","rev":"x"}`, p.sess, 400, fleet.CodeBadRequest},
		{"two objects", "application/json", `{"module":"m"}{"module":"n"}`, p.sess, 400, fleet.CodeBadRequest},
		{"a list", "application/json", `[1,2]`, p.sess, 400, fleet.CodeBadRequest},
		{"form post", "application/x-www-form-urlencoded", `module=m`, p.sess, 415, fleet.CodeBadRequest},
		{"no session", "application/json", `{"module":"m","revision":"` + rev + `","path":"main.go","line":3}`, "", 400, fleet.CodeBadRequest},
		{"short revision", "application/json", `{"module":"m","revision":"abc","path":"main.go","line":3}`, p.sess, 400, fleet.CodeBadRequest},
		{"line 0", "application/json", `{"module":"m","revision":"` + rev + `","path":"main.go","line":0}`, p.sess, 400, fleet.CodeBadRequest},
		{"huge", "application/json", `{"module":"` + strings.Repeat("m", 1<<20) + `"}`, p.sess, 413, "body_too_large"},
		{"an expiry that is no duration or time", "application/json", `{"module":"m","revision":"` + rev + `","path":"main.go","line":3,"expiry":"tomorrow"}`, p.sess, 400, fleet.CodeBadRequest},
		{"a negative expiry", "application/json", `{"module":"m","revision":"` + rev + `","path":"main.go","line":3,"expiry":"-5m"}`, p.sess, 400, fleet.CodeBadRequest},
		{"an expiry passed", "application/json", `{"module":"m","revision":"` + rev + `","path":"main.go","line":3,"expiry":"2020-01-01T00:00:00Z"}`, p.sess, 400, fleet.CodeBadRequest},
		{"an expiry a year ahead", "application/json", `{"module":"m","revision":"` + rev + `","path":"main.go","line":3,"expiry":"8760h"}`, p.sess, 400, fleet.CodeBadRequest},
	} {
		status, e := post("/api/tracepoints", c.ctype, []byte(c.body), c.session)
		if status != c.status || e.Code != c.code || e.Message == "" {
			t.Errorf("%s: %d %+v, want %d with code %s and a message", c.name, status, e, c.status, c.code)
		}
	}

	ro := newPage(t, "file:///nonexistent", func(o *web.Options) { o.ReadOnly = true })
	for _, r := range []struct{ method, path string }{{"POST", "/api/tracepoints"}, {"DELETE", "/api/tracepoints/abc"}, {"POST", "/api/fetch"}} {
		if status, body := ro.do(r.method, r.path, map[string]string{"module": "m"}); status != http.StatusForbidden || !strings.Contains(string(body), "read_only") {
			t.Errorf("read-only %s %s: %d %s, want 403 read_only", r.method, r.path, status, body)
		}
	}
	if status, body := ro.do("GET", "/api/fleet", nil); status != http.StatusOK {
		t.Errorf("read-only GET /api/fleet: %d %s, want 200", status, body)
	}
}

// TestSlowClient: a page that opens its event stream and never reads it
// costs the server a bounded queue, and other pages still get their
// events.
func TestSlowClient(t *testing.T) {
	t.Parallel()
	p := newPage(t, "file:///nonexistent", nil)
	req, _ := http.NewRequest("GET", p.hs.URL+"/api/events", nil)
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("X-RipTrace-Session", p.sess+"slow")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close() // never read
	other := p.events()
	// Tracepoints declared straight into the fleet reach the reading page.
	for i := range 50 {
		spec := &fleet.Spec{ID: fmt.Sprintf("slow-%d", i), Location: fleet.Location{Path: "x.go", Line: 1}, Capture: fleet.DefaultCapture}
		if err := p.c.Declare(t.Context(), spec); err != nil {
			t.Fatal(err)
		}
	}
	other.await(t, "tracepoints", 20*time.Second, func(b []byte) bool {
		var tps []web.TracepointView
		json.Unmarshal(b, &tps)
		return len(tps) == 50
	})
}

// TestTraceFromPage: the fleet runs commit A of a service whose remote is a
// local bare repository. The page lists the service and its revision,
// fetched; serves A's tree and main.go; a click on the marked line traces
// it as the signed-in user, hits arrive in the event stream with values;
// removing it clears it from the fleet.
func TestTraceFromPage(t *testing.T) {
	t.Parallel()
	r := twoRevisions(t)
	// The page signs in as a user, who owns what it sets.
	p := newPage(t, r.url, withUsers(t))
	p.user, p.password = "alice", "alice's password"
	exe := unique("revs-a-0")
	agenttest.Start(t, agenttest.Alias(t, r.binA, exe))
	p.startAgent("web-host-"+exe, exe)
	st := p.events()

	// The fleet event lists the service at A once the clone holds it.
	st.await(t, "fleet", 60*time.Second, func(b []byte) bool {
		var v struct{ Services []web.Service }
		json.Unmarshal(b, &v)
		for _, s := range v.Services {
			if s.Module == module && s.Source.State == "ready" && len(s.Revisions) == 1 && s.Revisions[0].Revision == r.revA {
				return true
			}
		}
		return false
	})
	var tree web.Tree
	if err := p.get("/api/tree?module="+module+"&rev="+r.revA, &tree); err != nil {
		t.Fatal(err)
	}
	if strings.Join(tree.Files, ",") != "go.mod,main.go" || tree.ModDir != "" {
		t.Errorf("tree of A = %+v, want go.mod and main.go with the module at the top", tree)
	}
	var text string
	if err := p.get("/api/file?module="+module+"&rev="+r.revA+"&path=main.go", &text); err != nil {
		t.Fatal(err)
	}
	line := markerIn(t, text, "work")

	status, body := p.do("POST", "/api/tracepoints", web.TracepointRequest{Module: module, Revision: r.revA, Path: "main.go", Line: line})
	if status != http.StatusCreated {
		t.Fatalf("POST /api/tracepoints: %d %s", status, body)
	}
	var reply web.TracepointReply
	json.Unmarshal(body, &reply)
	if reply.Lines[r.revA] != line || reply.Spec.Location.Revision != r.revA || reply.Spec.Owner != "web:alice" || reply.Spec.Limits.ExpiresAt.IsZero() {
		t.Errorf("the tracepoint = %+v, want line %d mapped into A, owned by web:alice, with an expiry", reply, line)
	}
	// The fleet said which programs have main.go: the tracepoint goes to
	// them alone.
	if got := strings.Join(reply.Spec.Selector.Processes, ","); got != module {
		t.Errorf("the tracepoint selects programs %q, want %s, the one whose DWARF names main.go", got, module)
	}
	id := reply.Spec.ID
	b := st.await(t, "hit", 60*time.Second, func(b []byte) bool {
		var h fleet.Placed
		json.Unmarshal(b, &h)
		return h.Tracepoint == id
	})
	var h fleet.Placed
	json.Unmarshal(b, &h)
	if h.Line != line || fleettest.Var(h.Args, "n") == nil || h.Order == 0 || h.Process.Revision != r.revA {
		t.Errorf("hit = line %d args %+v order %d revision %s, want line %d with n, a timeline order, revision A", h.Line, h.Args, h.Order, h.Process.Revision, line)
	}
	st.await(t, "tracepoints", 20*time.Second, func(b []byte) bool {
		var tps []web.TracepointView
		json.Unmarshal(b, &tps)
		return len(tps) == 1 && tps[0].Spec.ID == id && tps[0].Hits > 0 && len(tps[0].Statuses) == 1 && tps[0].Statuses[0].State == fleet.StateInstalled
	})
	// The agent attached to trace it: the fleet the page shows says so,
	// not what the process was when first listed.
	testsupport.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		var v struct{ Hosts []web.FleetHost }
		if err := p.get("/api/fleet", &v); err != nil {
			return err
		}
		for _, h := range v.Hosts {
			for _, proc := range h.Processes {
				if proc.Module == module && proc.Attached {
					return nil
				}
			}
		}
		return fmt.Errorf("hosts %+v, want the traced process attached", v.Hosts)
	})

	// Editing keeps the id and the line, and changes what it does.
	if status, body := p.do("PUT", "/api/tracepoints/"+id, web.EditRequest{Condition: "n%2 == 0", MaxHitsPerSecond: 20}); status != http.StatusOK {
		t.Fatalf("PUT: %d %s", status, body)
	}
	specs, err := p.c.Tracepoints(t.Context())
	if err != nil || len(specs) != 1 || specs[0].ID != id || specs[0].Condition != "n%2 == 0" || specs[0].Limits.MaxHitsPerSecond != 20 || specs[0].Location.Line != line {
		t.Errorf("after PUT the fleet declares %+v (%v), want %s at line %d with the condition and rate", specs, err, id, line)
	}
	if status, body := p.do("PUT", "/api/tracepoints/"+id, web.EditRequest{Condition: "n +"}); status != http.StatusBadRequest || !strings.Contains(string(body), fleet.CodeBadCondition) {
		t.Errorf("PUT with a condition that does not parse: %d %s, want 400 %s", status, body, fleet.CodeBadCondition)
	}
	if status, body := p.do("PUT", "/api/tracepoints/"+id, web.EditRequest{Expiry: "soon"}); status != http.StatusBadRequest || !strings.Contains(string(body), "neither a duration") {
		t.Errorf("PUT with an expiry that does not parse: %d %s, want 400 saying why", status, body)
	}
	// An expiry an hour ahead: listed as the tracepoint's end, and its
	// spec never expires later.
	end := time.Now().Add(time.Hour)
	if status, body := p.do("PUT", "/api/tracepoints/"+id, web.EditRequest{Expiry: end.Format(time.RFC3339)}); status != http.StatusOK {
		t.Fatalf("PUT with an expiry: %d %s", status, body)
	}
	st.await(t, "tracepoints", 20*time.Second, func(b []byte) bool {
		var tps []web.TracepointView
		json.Unmarshal(b, &tps)
		return len(tps) == 1 && tps[0].Expiry.Equal(end.Truncate(time.Second)) && !tps[0].Spec.Limits.ExpiresAt.After(tps[0].Expiry)
	})
	if status, body := p.do("DELETE", "/api/tracepoints/"+id, nil); status != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", status, body)
	}
	testsupport.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		specs, err := p.c.Tracepoints(t.Context())
		if err != nil || len(specs) > 0 {
			return fmt.Errorf("tracepoints %+v (%v), want none", specs, err)
		}
		return nil
	})

	// A tracepoint set to expire in 2 s: agents drop it then, and the
	// page's lease removes it from the fleet at its next renewal.
	status, body = p.do("POST", "/api/tracepoints", web.TracepointRequest{Module: module, Revision: r.revA, Path: "main.go", Line: line, Expiry: "2s"})
	if status != http.StatusCreated {
		t.Fatalf("POST with an expiry: %d %s", status, body)
	}
	json.Unmarshal(body, &reply)
	if exp := reply.Spec.Limits.ExpiresAt; exp.After(time.Now().Add(2*time.Second)) || exp.IsZero() {
		t.Errorf("limits.expiresAt = %v, want 2 s ahead at most", exp)
	}
	testsupport.CheckFor(t, 40*time.Second, 100*time.Millisecond, func() error {
		specs, err := p.c.Tracepoints(t.Context())
		if err != nil || len(specs) > 0 {
			return fmt.Errorf("tracepoints %+v (%v), want none once the expiry passed", specs, err)
		}
		return nil
	})
}

// TestRevisionRefused: the fleet runs A and C, where C changed the marked
// line. One click on A's line traces A and refuses C with the reason, on
// the reply and in C's status.
func TestRevisionRefused(t *testing.T) {
	t.Parallel()
	r := twoRevisions(t)
	p := newPage(t, r.url, nil)
	exeA, exeC := unique("revs-a"), unique("revs-c")
	agenttest.Start(t, agenttest.Alias(t, r.binA, exeA))
	agenttest.Start(t, agenttest.Alias(t, r.binC, exeC))
	p.startAgent("web-host-"+exeA, exeA, exeC)
	testsupport.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		var v struct{ Services []web.Service }
		if err := p.get("/api/fleet", &v); err != nil {
			return err
		}
		if len(v.Services) != 1 || len(v.Services[0].Revisions) != 2 || v.Services[0].Source.State != "ready" {
			return fmt.Errorf("services %+v, want %s at two revisions, fetched", v.Services, module)
		}
		return nil
	})
	var text string
	if err := p.get("/api/file?module="+module+"&rev="+r.revA+"&path=main.go", &text); err != nil {
		t.Fatal(err)
	}
	line := markerIn(t, text, "work")
	st := p.events()
	status, body := p.do("POST", "/api/tracepoints", web.TracepointRequest{Module: module, Revision: r.revA, Path: "main.go", Line: line})
	if status != http.StatusCreated {
		t.Fatalf("POST /api/tracepoints: %d %s", status, body)
	}
	var reply web.TracepointReply
	json.Unmarshal(body, &reply)
	if reply.Lines[r.revA] != line || !strings.Contains(reply.Refused[r.revC], "changed") {
		t.Fatalf("reply = lines %v refused %v, want A at %d and C refused because the line changed", reply.Lines, reply.Refused, line)
	}
	st.await(t, "tracepoints", 30*time.Second, func(b []byte) bool {
		var tps []web.TracepointView
		json.Unmarshal(b, &tps)
		if len(tps) != 1 {
			return false
		}
		var installed, refused bool
		for _, s := range tps[0].Statuses {
			installed = installed || s.Process.Revision == r.revA && s.State == fleet.StateInstalled
			refused = refused || s.Process.Revision == r.revC && s.State == fleet.StateError && s.Code == fleet.CodeLineChanged
		}
		return installed && refused
	})
}

// TestPageGoneRemovesTracepoints: when the page's event stream closes and
// does not come back within the grace period, its tracepoints go.
func TestPageGoneRemovesTracepoints(t *testing.T) {
	t.Parallel()
	r := twoRevisions(t)
	p := newPage(t, r.url, nil)
	exe := unique("revs-gone")
	agenttest.Start(t, agenttest.Alias(t, r.binA, exe))
	p.startAgent("web-host-"+exe, exe)
	st := p.events()
	var text string
	testsupport.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		return p.get("/api/file?module="+module+"&rev="+r.revA+"&path=main.go", &text)
	})
	status, body := p.do("POST", "/api/tracepoints", web.TracepointRequest{Module: module, Revision: r.revA, Path: "main.go", Line: markerIn(t, text, "work")})
	if status != http.StatusCreated {
		t.Fatalf("POST /api/tracepoints: %d %s", status, body)
	}
	if specs, _ := p.c.Tracepoints(t.Context()); len(specs) != 1 {
		t.Fatalf("declared %+v, want the page's tracepoint", specs)
	}
	st.close()
	testsupport.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		specs, err := p.c.Tracepoints(t.Context())
		if err != nil || len(specs) > 0 {
			return fmt.Errorf("tracepoints %+v (%v), want none once the page is gone", specs, err)
		}
		return nil
	})
}

// TestFetchFailureShown: a service whose repository cannot be cloned is
// listed with the clone's error, and a fetch asked from the page answers
// it with a code.
func TestFetchFailureShown(t *testing.T) {
	t.Parallel()
	r := twoRevisions(t)
	p := newPage(t, "file://"+t.TempDir()+"/missing.git", nil)
	exe := unique("revs-nofetch")
	agenttest.Start(t, agenttest.Alias(t, r.binA, exe))
	p.startAgent("web-host-"+exe, exe)
	st := p.events()
	st.await(t, "fleet", 60*time.Second, func(b []byte) bool {
		var v struct{ Services []web.Service }
		json.Unmarshal(b, &v)
		return len(v.Services) == 1 && v.Services[0].Source.State == "error" && strings.Contains(v.Services[0].Source.Error, "cloning")
	})
	status, body := p.do("POST", "/api/fetch", web.FetchRequest{Module: module})
	if status != http.StatusBadGateway || !strings.Contains(string(body), "fetch_failed") {
		t.Errorf("POST /api/fetch: %d %s, want 502 fetch_failed", status, body)
	}
	status, body = p.do("GET", "/api/tree?module="+module+"&rev="+r.revA, nil)
	if status != http.StatusUnprocessableEntity || !strings.Contains(string(body), "cloning") {
		t.Errorf("GET /api/tree: %d %s, want 422 saying the clone failed", status, body)
	}
}

// TestNoRevisionSaid: processes whose binary carries no vcs.revision are
// listed under their service with why no code is shown and how to build
// them so that it is, not left out.
func TestNoRevisionSaid(t *testing.T) {
	t.Parallel()
	p := newPage(t, "file:///nonexistent", nil)
	bin := agenttest.BuildTarget(t, "../agent/testdata/targets/loop", "-buildvcs=false")
	exe := unique("loop-norev")
	agenttest.Start(t, agenttest.Alias(t, bin, exe))
	p.startAgent("web-host-"+exe, exe)
	testsupport.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		var v struct{ Services []web.Service }
		if err := p.get("/api/fleet", &v); err != nil {
			return err
		}
		for _, s := range v.Services {
			for _, r := range s.Revisions {
				if r.Revision == "" && r.Processes == 1 && strings.Contains(r.NoCode, "no vcs.revision") && strings.Contains(r.NoCode, "-buildvcs=true") {
					return nil
				}
			}
		}
		return fmt.Errorf("services %+v, want one revision-less process with why no code is shown", v.Services)
	})
}
