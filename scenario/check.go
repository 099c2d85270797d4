package scenario

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/riptrace/riptrace/fleet"
)

// CheckError is a mistake in a scenario, at a path such as
// "expect[2].count". A scenario read from a file reports it as a
// *ParseError at that key's line and column.
type CheckError struct {
	Path string
	Msg  string
}

func (e *CheckError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

var nameRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]*$`)

// Check validates what can be checked before running: names, references
// between parts, one kind per step and expectation, counts and
// expressions.
func (s *Scenario) Check() error {
	fail := func(path, format string, args ...any) error {
		return &CheckError{Path: path, Msg: fmt.Sprintf(format, args...)}
	}
	services := map[string]bool{}
	for i, sv := range s.Services {
		p := fmt.Sprintf("services[%d]", i)
		if !nameRe.MatchString(sv.Name) {
			return fail(p+".name", "%q: name each service with letters, digits, '-' and '_', such as payments", sv.Name)
		}
		if services[sv.Name] {
			return fail(p+".name", "%q names two services: give each its own name", sv.Name)
		}
		services[sv.Name] = true
		if sv.Command == "" {
			return fail(p+".command", "missing: give the program to start, such as ./bin/payments")
		}
		n := 0
		for _, set := range []bool{sv.Ready.HTTP != "", sv.Ready.TCP != "", sv.Ready.Log != ""} {
			if set {
				n++
			}
		}
		if n > 1 {
			return fail(p+".ready", "give one of http, tcp and log")
		}
		if sv.Ready.Log != "" {
			if _, err := regexp.Compile(sv.Ready.Log); err != nil {
				return fail(p+".ready.log", "%q is not a Go regular expression: %v", sv.Ready.Log, err)
			}
		}
	}
	if s.Fleet != nil && s.Fleet.NATS == "" {
		return fail("fleet.nats", "missing: give the fleet's NATS URL, such as nats://127.0.0.1:4222, or drop fleet to start one")
	}
	if s.Fleet != nil {
		cred := s.Fleet.Credentials("")
		if err := cred.Check(func(f string) string { return "fleet." + f }); err != nil {
			var ce *fleet.CredentialError
			if errors.As(err, &ce) {
				return fail("fleet."+ce.Field, "%s", ce.Msg)
			}
			return fail("fleet", "%v", err)
		}
	}
	tps := map[string]bool{}
	for i, tp := range s.Tracepoints {
		p := fmt.Sprintf("tracepoints[%d]", i)
		if !nameRe.MatchString(tp.Name) {
			return fail(p+".name", "%q: name each tracepoint with letters, digits, '-' and '_', such as charge", tp.Name)
		}
		if tps[tp.Name] {
			return fail(p+".name", "%q names two tracepoints: give each its own name", tp.Name)
		}
		tps[tp.Name] = true
		if (tp.At == "") == (tp.Function == "") {
			return fail(p, "give one of at (FILE:LINE or FILE:@MARK) and function (pkg.Func)")
		}
		if tp.Service != "" && len(services) == 0 {
			return fail(p+".service", "%q is not a service of this scenario, which starts none: list it under services, or drop service: and select processes with hosts and processes", tp.Service)
		}
		if tp.Service != "" && !services[tp.Service] {
			return fail(p+".service", "%q is not a service of this scenario: the services are %s", tp.Service, strings.Join(slices.Sorted(maps.Keys(services)), ", "))
		}
		if tp.Service == "" && s.Fleet == nil {
			return fail(p, "names no service: give service: NAME, so that the run traces only what it started")
		}
		// The parts of fleet.Spec that do not need the line.
		spec := fleet.Spec{ID: "x", Location: fleet.Location{Path: "x.go", Line: 1}, Condition: tp.Condition, HitCondition: tp.HitCondition,
			LogMessage: tp.Log, Capture: fleet.Capture{Exprs: tp.Capture, StackDepth: tp.StackDepth},
			Limits: fleet.Limits{MaxHits: tp.MaxHits, MaxHitsPerSecond: tp.MaxHitsPerSecond}, Backend: tp.Backend,
			Selector: fleet.Selector{Hosts: tp.Hosts, Processes: tp.Processes}}
		if err := spec.Validate(); err != nil {
			msg := strings.Replace(err.Error(), "tracepoint x", "tracepoint "+tp.Name, 1)
			if fleet.AsError(err).Code == fleet.CodeBadCondition {
				msg += ": write one in Go's syntax, such as req.Amount > 0"
			}
			return fail(p, "%s", msg)
		}
	}
	var steps func(path string, list []Step) error
	steps = func(path string, list []Step) error {
		for i, st := range list {
			p := fmt.Sprintf("%s[%d]", path, i)
			n := 0
			for _, set := range []bool{st.HTTP != nil, st.GRPC != nil, st.Shell != "", st.Until != nil, len(st.Parallel) > 0} {
				if set {
					n++
				}
			}
			if n != 1 {
				return fail(p, "give exactly one of http, grpc, sh, until and parallel")
			}
			if st.Repeat < 0 {
				return fail(p+".repeat", "%d: repeat a step 1 or more times", st.Repeat)
			}
			if st.HTTP != nil && st.HTTP.URL == "" {
				return fail(p+".http.url", "missing: give the URL, such as http://${gateway.addr}/checkout")
			}
			if g := st.GRPC; g != nil {
				if g.Target == "" {
					return fail(p+".grpc.target", "missing: give the server's HOST:PORT, such as ${shop.addr}")
				}
				if _, _, err := splitMethod(g.Method); err != nil {
					return fail(p+".grpc.method", "%v", err)
				}
				if _, err := parseCode(g.Code); err != nil {
					return fail(p+".grpc.code", "%v", err)
				}
				if len(g.ImportPaths) > 0 && len(g.Protos) == 0 {
					return fail(p+".grpc.importPaths", "without protos they are not read: list the .proto files in protos, or drop importPaths to use server reflection")
				}
			}
			if st.Until != nil {
				if !tps[st.Until.Hits] {
					return fail(p+".until.hits", "%q is not a tracepoint of this scenario: the tracepoints are %s", st.Until.Hits, strings.Join(slices.Sorted(maps.Keys(tps)), ", "))
				}
				if st.Until.Count < 1 {
					return fail(p+".until.count", "%d: wait for 1 or more hits", st.Until.Count)
				}
			}
			if err := steps(p+".parallel", st.Parallel); err != nil {
				return err
			}
		}
		return nil
	}
	if err := steps("steps", s.Steps); err != nil {
		return err
	}
	known := func(path, name string) error {
		if !tps[name] {
			return fail(path, "%q is not a tracepoint of this scenario: the tracepoints are %s", name, strings.Join(slices.Sorted(maps.Keys(tps)), ", "))
		}
		return nil
	}
	for i, e := range s.Expect {
		p := fmt.Sprintf("expect[%d]", i)
		switch e.Kind() {
		case "":
			return fail(p, "says nothing: give count or where (with hits), never, order, or within (with from and to)")
		case "never":
			if err := known(p+".never", e.Never); err != nil {
				return err
			}
		case "count", "where":
			if e.Hits == "" {
				return fail(p, "give hits: the tracepoint to count or check")
			}
			if err := known(p+".hits", e.Hits); err != nil {
				return err
			}
		case "order":
			if len(e.Order) < 2 {
				return fail(p+".order", "list two tracepoints or more, in the order they must run")
			}
			for j, n := range e.Order {
				if err := known(fmt.Sprintf("%s.order[%d]", p, j), n); err != nil {
					return err
				}
			}
		case "within":
			if e.From == "" || e.To == "" || e.Within <= 0 {
				return fail(p, "within needs from, to and a duration such as 200ms")
			}
			for _, k := range []struct{ key, name string }{{"from", e.From}, {"to", e.To}} {
				if err := known(p+"."+k.key, k.name); err != nil {
					return err
				}
			}
		}
		if e.Count != "" {
			if _, _, err := parseCount(e.Count); err != nil {
				return fail(p+".count", "%v", err)
			}
		}
		if e.Where != "" {
			if _, err := compile(e.Where); err != nil {
				return fail(p+".where", "%v", err)
			}
		}
		for name, src := range e.By {
			if name != "*" {
				if err := known(p+".by."+name, name); err != nil {
					return err
				}
			}
			if _, err := compile(src); err != nil {
				return fail(p+".by."+name, "%v", err)
			}
		}
	}
	return nil
}
