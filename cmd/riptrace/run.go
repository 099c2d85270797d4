package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/riptrace/riptrace/scenario"
)

// errFailed is a run whose expectations did not all hold (exit status 1);
// the summary has said which.
var errFailed = errors.New("expectations failed")

func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", "[--junit FILE] [--json] [--repeat N] [--record DIR | --replay RECORDING] [--nats URL [credentials]] FILE...", stderr)
	junit := fs.String("junit", "", "write the results as JUnit XML to `FILE`, one test case per expectation")
	asJSON := fs.Bool("json", false, "print the results as JSON instead of the summary")
	repeat := fs.Int("repeat", 1, "run each scenario `N` times")
	backend := fs.String("backend", "auto", "`BACKEND` of the embedded agent: auto, ebpf or delve")
	verbose := fs.Bool("v", false, "show the services' output and the embedded agent's log")
	record := fs.String("record", "", "save each run's hits in `DIR` as NAME.hits.jsonl, for --replay")
	replay := fs.String("replay", "", "evaluate the expectations over the hits of `RECORDING` (from --record) instead of running anything")
	var conn connFlags
	conn.register(fs)
	// A run starts its own fleet unless told to join one: RIPTRACE_NATS
	// is not a reason to leave the laptop's embedded fleet.
	nats := fs.Lookup("nats")
	nats.Usage, nats.DefValue = "join the fleet at NATS server `URL` instead of starting one; a scenario's fleet: is joined anyway", ""
	files, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := conn.check(); err != nil {
		return err
	}
	join := false
	fs.Visit(func(f *flag.Flag) { join = join || f.Name == "nats" })
	if len(files) == 0 {
		return usageError{"run needs a scenario file: riptrace run FILE.yaml (see examples/scenarios)"}
	}
	if *repeat < 1 {
		return usageError{fmt.Sprintf("--repeat %d: run each scenario 1 or more times", *repeat)}
	}
	if *replay != "" && (*record != "" || *repeat != 1) {
		return usageError{"--replay evaluates a recording once: drop --record and --repeat"}
	}
	var scenarios []*scenario.Scenario
	for _, f := range files {
		s, err := scenario.Load(f)
		if err != nil {
			return usageError{err.Error()}
		}
		joinWith(s, &conn, join)
		scenarios = append(scenarios, s)
	}
	opts := scenario.Options{Backend: *backend}
	if !*asJSON {
		opts.Progress = stderr
	}
	if *verbose {
		opts.Log = stderr
	}
	if *record != "" {
		if err := os.MkdirAll(*record, 0o755); err != nil {
			return fmt.Errorf("making the recording directory: %w", err)
		}
	}
	var results []*scenario.Result
	ok := true
	for _, s := range scenarios {
		for i := range *repeat {
			var res *scenario.Result
			var err error
			switch {
			case *replay != "":
				res, err = replayFile(s, *replay)
			case *record != "":
				res, err = runRecorded(ctx, s, opts, *record, i, *repeat, stderr)
			default:
				res, err = scenario.Run(ctx, s, opts)
			}
			if err != nil {
				res = &scenario.Result{Name: s.Name, Errors: []string{err.Error()}}
			}
			if *repeat > 1 {
				res.Name = fmt.Sprintf("%s#%d", s.Name, i+1)
			}
			ok = ok && res.OK()
			results = append(results, res)
			if !*asJSON {
				res.Summary(stdout)
			}
			if ctx.Err() != nil {
				break
			}
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return err
		}
	}
	if *junit != "" {
		f, err := os.Create(*junit)
		if err != nil {
			return fmt.Errorf("writing the JUnit report: %w", err)
		}
		err = scenario.JUnit(f, results)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("writing the JUnit report %s: %w", *junit, err)
		}
	}
	if !ok {
		return errFailed
	}
	return nil
}

// replayFile evaluates s's expectations over the recording at path.
func replayFile(s *scenario.Scenario, path string) (*scenario.Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening the recording: %w", err)
	}
	defer f.Close()
	return scenario.Replay(s, f, path)
}

// runRecorded runs s, its hits saved in dir as NAME.hits.jsonl (NAME-I
// for the I-th of several repeats).
func runRecorded(ctx context.Context, s *scenario.Scenario, opts scenario.Options, dir string, i, repeat int, stderr io.Writer) (*scenario.Result, error) {
	name := s.Name
	if repeat > 1 {
		name = fmt.Sprintf("%s-%d", name, i+1)
	}
	path := filepath.Join(dir, name+".hits.jsonl")
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("creating the recording: %w", err)
	}
	opts.Record = f
	res, err := scenario.Run(ctx, s, opts)
	if cerr := f.Close(); err == nil && cerr != nil {
		res.Errors = append(res.Errors, fmt.Sprintf("writing the recording %s: %v", path, cerr))
	}
	if err != nil {
		os.Remove(path) // the run did not happen: nothing to replay
		return nil, err
	}
	fmt.Fprintf(stderr, "==> recorded %d hits in %s (riptrace run --replay %s FILE)\n", res.Hits, path, path)
	return res, nil
}

// joinWith applies the command line's fleet to s: --nats makes it join
// that fleet instead of the file's or an embedded one, and credentials
// given by flag or environment fill in those the file leaves out, so that
// secrets need not be written in scenarios.
func joinWith(s *scenario.Scenario, conn *connFlags, join bool) {
	if join {
		if s.Fleet == nil {
			s.Fleet = &scenario.Fleet{}
		}
		s.Fleet.NATS, s.Fleet.Prefix = conn.url, conn.prefix
	}
	fl := s.Fleet
	if fl == nil {
		return
	}
	c := conn.cred
	for _, f := range []struct {
		file   *string
		flag   string
		isPath bool
	}{
		{&fl.Creds, c.Creds, true}, {&fl.NKey, c.NKey, true}, {&fl.User, c.User, false}, {&fl.Password, c.Password, false},
		{&fl.Token, c.Token, false}, {&fl.TLS.CA, c.TLS.CA, true}, {&fl.TLS.Cert, c.TLS.Cert, true}, {&fl.TLS.Key, c.TLS.Key, true},
		{&fl.InboxPrefix, c.InboxPrefix, false},
	} {
		if *f.file != "" || f.flag == "" {
			continue
		}
		*f.file = f.flag
		// A file named on the command line is the caller's, not the
		// scenario directory's.
		if abs, err := filepath.Abs(f.flag); f.isPath && err == nil {
			*f.file = abs
		}
	}
}
