package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/riptrace/riptrace/scenario"
)

// errFailed is a run whose expectations did not all hold (exit status 1);
// the summary has said which.
var errFailed = errors.New("expectations failed")

func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", "[--junit FILE] [--json] [--repeat N] FILE...", stderr)
	junit := fs.String("junit", "", "write the results as JUnit XML to `FILE`, one test case per expectation")
	asJSON := fs.Bool("json", false, "print the results as JSON instead of the summary")
	repeat := fs.Int("repeat", 1, "run each scenario `N` times")
	backend := fs.String("backend", "auto", "`BACKEND` of the embedded agent: auto, ebpf or delve")
	verbose := fs.Bool("v", false, "show the services' output and the embedded agent's log")
	files, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return usageError{"run needs a scenario file: riptrace run FILE.yaml (see examples/scenarios)"}
	}
	if *repeat < 1 {
		return usageError{fmt.Sprintf("--repeat %d: run each scenario 1 or more times", *repeat)}
	}
	var scenarios []*scenario.Scenario
	for _, f := range files {
		s, err := scenario.Load(f)
		if err != nil {
			return usageError{err.Error()}
		}
		scenarios = append(scenarios, s)
	}
	opts := scenario.Options{Backend: *backend}
	if !*asJSON {
		opts.Progress = stderr
	}
	if *verbose {
		opts.Log = stderr
	}
	var results []*scenario.Result
	ok := true
	for _, s := range scenarios {
		for i := range *repeat {
			res, err := scenario.Run(ctx, s, opts)
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
