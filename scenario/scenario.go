package scenario

import (
	"fmt"
	"time"

	"github.com/riptrace/riptrace/fleet"
)

// Scenario is one reproducible test: where the fleet is, what to start,
// what to trace, what to do and what must hold. Parse reads one from YAML;
// Go tests build one directly.
type Scenario struct {
	// Name names the scenario in reports (default: the file's name).
	Name string `yaml:"name"`
	// Dir is the directory relative paths (tracepoint files, service
	// commands and working directories) are read from.
	Dir string `yaml:"-"`
	// Fleet joins a running fleet; nil starts an embedded server and agent.
	Fleet *Fleet `yaml:"fleet"`
	// Services are started in order, before the tracepoints are declared,
	// and all stopped at the end.
	Services    []Service     `yaml:"services"`
	Tracepoints []Tracepoint  `yaml:"tracepoints"`
	Steps       []Step        `yaml:"steps"`
	Expect      []Expectation `yaml:"expect"`
	// Settle bounds the wait for the last hits after the steps (default
	// DefaultSettle): the run waits until every agent's watermark has
	// passed the end of the steps and no hit has come for Quiet.
	Settle time.Duration `yaml:"settle"`
	Quiet  time.Duration `yaml:"quiet"`
	// ClockTolerance is how far the times of hits whose agent had no clock
	// reading may be off (nil: DefaultClockTolerance); order and time
	// bounds closer than it are uncertain.
	ClockTolerance *time.Duration `yaml:"clockTolerance"`
	// Timeout bounds the whole run (default DefaultTimeout).
	Timeout time.Duration `yaml:"timeout"`
}

// Defaults of a scenario.
const (
	DefaultSettle       = 10 * time.Second
	DefaultQuiet        = 300 * time.Millisecond
	DefaultTimeout      = 5 * time.Minute
	DefaultReadyTimeout = 30 * time.Second
	DefaultStepTimeout  = 30 * time.Second
	// DefaultMaxHitsPerSecond is a scenario tracepoint's rate limit: a
	// burst of test requests must not be thinned out by the fleet's
	// production default.
	DefaultMaxHitsPerSecond = 10000
)

// Fleet is a running fleet to join, and as whom. Files are relative to
// Scenario.Dir. Secrets are better kept out of the file: riptrace run
// takes them from its flags and their environment variables.
type Fleet struct {
	NATS   string `yaml:"nats"`   // nats://host:port
	Prefix string `yaml:"prefix"` // the fleet's subject prefix (default riptrace)
	Creds  string `yaml:"creds"`  // a NATS credentials file
	NKey   string `yaml:"nkey"`   // an nkey seed file
	User   string `yaml:"user"`
	// Password goes with User.
	Password string         `yaml:"password"`
	Token    string         `yaml:"token"`
	TLS      fleet.TLSFiles `yaml:"tls"`
	// InboxPrefix is where replies come, when the server's permissions
	// give this user one (_INBOX_<user> in deploy/nats.conf).
	InboxPrefix string `yaml:"inboxPrefix"`
	// Hosts and Processes select, by glob, where tracepoints that name no
	// service apply.
	Hosts     []string `yaml:"hosts"`
	Processes []string `yaml:"processes"`
}

// Service is a program started for the run.
type Service struct {
	Name    string            `yaml:"name"`
	Command string            `yaml:"command"` // a path (relative to Scenario.Dir) or a name on $PATH
	Args    []string          `yaml:"args"`
	Env     map[string]string `yaml:"env"` // added to the runner's environment
	Dir     string            `yaml:"dir"`
	Ready   Probe             `yaml:"ready"`
}

// Probe says when a service is ready. Exactly one of HTTP, TCP and Log is
// set; none means ready once started.
type Probe struct {
	HTTP string `yaml:"http"` // GET this URL until it answers below 500
	TCP  string `yaml:"tcp"`  // connect to this HOST:PORT until it accepts
	// Log is a regular expression matched against each line the service
	// prints (stdout or stderr). Its named groups become variables:
	// (?P<addr>\S+) in service gateway is ${gateway.addr}.
	Log     string        `yaml:"log"`
	Timeout time.Duration `yaml:"timeout"` // default DefaultReadyTimeout
}

// Tracepoint is a named tracepoint of the run: everything fleet.Spec has,
// with its line named in the scenario's terms.
type Tracepoint struct {
	Name string `yaml:"name"`
	// At is FILE:LINE, or FILE:@MARK for the line holding //@trace(MARK),
	// the file relative to Scenario.Dir. Function (pkg.Func,
	// pkg.(*T).Method) names the function's first line instead.
	At       string `yaml:"at"`
	Function string `yaml:"function"`
	// Service limits the tracepoint to that started service's process.
	Service      string   `yaml:"service"`
	Hosts        []string `yaml:"hosts"`
	Processes    []string `yaml:"processes"`
	Condition    string   `yaml:"condition"`
	HitCondition string   `yaml:"hitCondition"`
	Log          string   `yaml:"log"`
	// Capture lists expressions captured with each hit, besides the
	// arguments and locals.
	Capture          []string `yaml:"capture"`
	NoLocals         bool     `yaml:"noLocals"`
	StackDepth       int      `yaml:"stackDepth"`
	MaxHits          int      `yaml:"maxHits"`
	MaxHitsPerSecond int      `yaml:"maxHitsPerSecond"` // default DefaultMaxHitsPerSecond
	Backend          string   `yaml:"backend"`
}

// Step is one action. Exactly one of HTTP, GRPC, Shell, Until, Parallel is set;
// Repeat runs it that many times (the variable ${i} counts from 0).
type Step struct {
	Name     string        `yaml:"name"`
	HTTP     *HTTPStep     `yaml:"http"`
	GRPC     *GRPCStep     `yaml:"grpc"`
	Shell    string        `yaml:"sh"`
	Until    *Until        `yaml:"until"`
	Parallel []Step        `yaml:"parallel"`
	Repeat   int           `yaml:"repeat"`
	Timeout  time.Duration `yaml:"timeout"` // default DefaultStepTimeout
}

// HTTPStep is an HTTP request and the status it must get.
type HTTPStep struct {
	Method  string            `yaml:"method"` // default GET, or POST with a body
	URL     string            `yaml:"url"`
	Headers map[string]string `yaml:"headers"`
	Body    string            `yaml:"body"`
	Status  int               `yaml:"status"` // 0: any status below 400
}

// Until waits until tracepoint Hits has at least Count hits.
type Until struct {
	Hits  string `yaml:"hits"`
	Count int    `yaml:"count"`
}

// Expectation is one assertion over the run's hits. Its kind is the first
// of Never, Order, Within, Count/Where that is set.
type Expectation struct {
	Name string `yaml:"name"`
	// Hits names the tracepoint a Count or Where expectation is about.
	Hits string `yaml:"hits"`
	// Count compares the number of hits (those satisfying Where, if set):
	// "== 4", ">= 1", "< 10".
	Count string `yaml:"count"`
	// Where is a predicate over a hit's captured variables (expr-lang
	// syntax: req.Amount > 0 && err == nil). Without Count, every hit must
	// satisfy it, and there must be at least one.
	Where string `yaml:"where"`
	// Never names a tracepoint that must not be hit.
	Never string `yaml:"never"`
	// Order names tracepoints whose first hits must come in this order
	// within each request; By says which request a hit belongs to.
	Order []string `yaml:"order"`
	// Within bounds the time from the first hit of From to the first hit
	// of To, within each request (By), and To must come after From.
	Within time.Duration `yaml:"within"`
	From   string        `yaml:"from"`
	To     string        `yaml:"to"`
	// By maps tracepoint names to an expression giving a hit's request
	// key, such as o.ID for one and req.OrderID for another; the key "*"
	// applies to the tracepoints not named. A hit By has no expression
	// for is in the request of the W3C trace id it captured, as the
	// timeline groups hits; without one either, in the whole run's.
	By map[string]string `yaml:"by"`
}

// Kind names the kind of e, for reports.
func (e *Expectation) Kind() string {
	switch {
	case e.Never != "":
		return "never"
	case len(e.Order) > 0:
		return "order"
	case e.Within > 0 || e.From != "" || e.To != "":
		return "within"
	case e.Count != "":
		return "count"
	case e.Where != "":
		return "where"
	}
	return ""
}

// Title is the expectation as a reader names it: its Name, or what it says.
func (e *Expectation) Title() string {
	if e.Name != "" {
		return e.Name
	}
	switch e.Kind() {
	case "never":
		return e.Never + " is never hit"
	case "order":
		return fmt.Sprintf("order %v within each request", e.Order)
	case "within":
		return fmt.Sprintf("%s within %v of %s", e.To, e.Within, e.From)
	case "count":
		if e.Where != "" {
			return fmt.Sprintf("%s where %s: count %s", e.Hits, e.Where, e.Count)
		}
		return fmt.Sprintf("%s count %s", e.Hits, e.Count)
	case "where":
		return fmt.Sprintf("every %s hit has %s", e.Hits, e.Where)
	}
	return "an empty expectation"
}
