// Package scenario runs reproducible tests across several running Go
// services: it starts (or joins) a fleet, starts the services, declares
// tracepoints, drives the services with steps (HTTP requests, unary gRPC
// calls by server reflection or by proto files, shell commands, waits,
// parallel groups), collects the hits and evaluates
// expectations over the values at those lines: counts, predicates over the
// captured variables, lines never hit, the order of hits within a request
// across services, and time bounds between hits.
//
// A Go integration test uses it directly:
//
//	r, err := scenario.Start(ctx, &scenario.Scenario{Services: ..., Tracepoints: ...}, scenario.Options{})
//	defer r.Close()
//	r.Do(ctx, steps...)
//	res := r.Check(ctx, expectations...)
//	res.Report(t) // a t.Errorf per failed expectation, with the hits that broke it
//
// Runner.Record (or Options.Record) saves a run's hits, and Replay
// evaluates expectations over them again without starting anything. The
// format is package recording's, which the debug adapter and the language
// server read too.
//
// `riptrace run FILE...` reads the same Scenario from YAML (Parse),
// which is a thin layer over this package. A test binary that starts the
// embedded agent must call delve.MaybeRunWorker first in TestMain
// (agenttest.Main does), as the Delve backend re-runs the binary as its
// worker.
//
// Hits are ordered by Order, through the fleet's execution-ordered
// timeline (fleet.Timeline): by coordinated time, each hit's capture time
// corrected by its agent's clock offset. Two hits closer than their
// clocks' error bounds neither hold nor break an order or a time bound:
// the outcome counts them as uncertain.
//
// A run watches its fleet and its services: the connection to NATS down
// past DefaultNATSGrace, or an agent its tracepoints were installed on
// gone by its heartbeat, ends the step under way and fails the run with a
// *FleetLostError; a service exiting does the same with a
// *ServiceExitedError. Close stops the services as always. Every process
// a run starts leads a process group; if the runner dies before Close, a
// watchdog shell it started kills those groups.
package scenario
