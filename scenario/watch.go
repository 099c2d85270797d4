package scenario

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/riptrace/riptrace/fleet"
)

// DefaultNATSGrace is how long the connection to NATS may be down before
// the run gives up on the fleet. A shorter outage loses nothing: agents
// keep their hits through it and send them in order once back. An agent
// is judged by its heartbeat instead: gone once it withdrew it or missed
// three (15 s at the agents' default period), as riptrace hosts shows it.
// Its watermarks would tell sooner, but stop for a good reason too: when
// its tracepoints are done (maxHits) or their processes exit.
const DefaultNATSGrace = 5 * time.Second

// FleetLostError is a run that lost its fleet: the NATS server or an
// agent its tracepoints were installed on stopped answering, so hits may
// be missing and nothing the run would check can be trusted.
type FleetLostError struct {
	What  string // "the NATS server at URL has not answered", "the agent on host H has sent nothing"
	Since time.Time
	Cause string
	Fix   string // what to check
}

func (e *FleetLostError) Error() string {
	return fmt.Sprintf("lost the fleet: %s since %s (%s), so hits may be missing. %s, then run the scenario again",
		e.What, e.Since.Format("15:04:05.000"), e.Cause, e.Fix)
}

// ServiceExitedError is a service of the run that exited before the run
// stopped it.
type ServiceExitedError struct {
	Name  string
	State string // "exit status 3", "signal: killed"
	Tail  string // its last lines
}

func (e *ServiceExitedError) Error() string {
	return fmt.Sprintf("service %s exited during the run (%s)%s", e.Name, e.State, e.Tail)
}

// fleetWatch notices the fleet vanishing during a run: the connection to
// NATS down past its grace, or an agent of the run silent past its own;
// and a service of the run exiting. Its goroutine polls until close; lost
// is cancelled with a *FleetLostError or *ServiceExitedError as its
// cause.
type fleetWatch struct {
	url  string // set before run; "" for the embedded server
	lost context.Context
	lose context.CancelCauseFunc
	stop chan struct{}
	done chan struct{}

	// mu guards the fields below, which the NATS client's handlers set.
	mu   sync.Mutex
	down time.Time // when the connection went down; zero while up
	why  string
	up   time.Time // when the connection came (back) up
}

func newFleetWatch() *fleetWatch {
	w := &fleetWatch{stop: make(chan struct{}), done: make(chan struct{}), up: time.Now()}
	w.lost, w.lose = context.WithCancelCause(context.Background())
	return w
}

// options are the NATS client options that tell w about the connection.
func (w *fleetWatch) options() []nats.Option {
	return []nats.Option{
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.down, w.why = time.Now(), "disconnected"
			if err != nil {
				w.why = err.Error()
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.down, w.up = time.Time{}, time.Now()
		}),
		nats.ClosedHandler(func(*nats.Conn) {
			w.mu.Lock()
			defer w.mu.Unlock()
			if w.down.IsZero() {
				w.down, w.why = time.Now(), "connection closed"
			}
		}),
	}
}

// agentsFunc lists the agents the run depends on that are gone (a
// HostEntry marked Gone, or Name alone when it withdrew its heartbeat),
// and says whether reading the hit stream stopped (Runner.agents).
type agentsFunc func() (gone []fleet.HostEntry, at time.Time, stopped error)

// run polls until close; agents, if not nil, tells which agents are gone.
func (w *fleetWatch) run(grace time.Duration, agents agentsFunc) {
	defer close(w.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-tick.C:
		}
		w.mu.Lock()
		down, why := w.down, w.why
		w.mu.Unlock()
		if !down.IsZero() {
			if time.Since(down) > grace {
				what := "the NATS server at " + w.url
				if w.url == "" {
					what = "the embedded NATS server"
				}
				w.lose(&FleetLostError{What: what + " has not answered", Since: down, Cause: why, Fix: "Check that it runs"})
				return
			}
			continue // heartbeats are not heard while down
		}
		if agents == nil {
			continue
		}
		gone, at, stopped := agents()
		if stopped != nil {
			w.lose(&FleetLostError{What: "the hit stream has not been read", Since: at, Cause: stopped.Error(), Fix: "Check the NATS server's JetStream"})
			return
		}
		if len(gone) > 0 {
			h := gone[0]
			lost := &FleetLostError{What: "the agent on host " + h.Name + " has sent no heartbeat", Since: h.LastSeen, Cause: "it missed three", Fix: "Check its log, and riptrace hosts"}
			if h.LastSeen.IsZero() {
				lost.What, lost.Since, lost.Cause = "the agent on host "+h.Name+" has been gone", time.Now(), "it withdrew its heartbeat: it stopped"
			} else if h.Error != "" {
				lost.Cause = h.Error
			}
			w.lose(lost)
			return
		}
	}
}

// service watches sv until close: its exit ends the run's wait.
func (w *fleetWatch) service(sv *service) {
	go func() {
		select {
		case <-sv.done:
			w.lose(&ServiceExitedError{Name: sv.name, State: fmt.Sprint(sv.cmd.ProcessState), Tail: sv.tail()})
		case <-w.stop:
		}
	}()
}

func (w *fleetWatch) close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
}

// err is the loss, or nil.
func (w *fleetWatch) err() error {
	if w.lost.Err() == nil {
		return nil
	}
	return context.Cause(w.lost)
}

// guard is ctx, cancelled too when the fleet is lost.
func (w *fleetWatch) guard(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(w.lost, func() { cancel(context.Cause(w.lost)) })
	return ctx, func() { stop(); cancel(nil) }
}
