package scenario

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Do runs steps in order and stops at the first that fails. The fleet
// vanishing, or a service exiting, ends the step under way: the error is
// then a *FleetLostError or a *ServiceExitedError.
func (r *Runner) Do(ctx context.Context, steps ...Step) error {
	ctx, unguard := r.watch.guard(ctx)
	defer unguard()
	for i := range steps {
		if r.opts.Progress != nil {
			name := steps[i].Name
			if name != "" {
				name = " (" + name + ")"
			}
			r.progress("step %d of %d%s, %d hits so far", i+1, len(steps), name, r.hits.total())
		}
		if err := r.step(ctx, &steps[i], fmt.Sprintf("step %d", i+1), r.vars); err != nil {
			if lost := r.watch.err(); lost != nil {
				return fmt.Errorf("step %d: %w", i+1, lost)
			}
			return err
		}
	}
	return nil
}

func (r *Runner) step(ctx context.Context, st *Step, where string, vars map[string]string) error {
	if st.Name != "" {
		where += " (" + st.Name + ")"
	}
	n := max(st.Repeat, 1)
	for i := range n {
		v := vars
		if st.Repeat > 0 {
			v = make(map[string]string, len(vars)+1)
			for k, x := range vars {
				v[k] = x
			}
			v["i"] = strconv.Itoa(i)
		}
		w := where
		if st.Repeat > 1 {
			w = fmt.Sprintf("%s, repeat %d of %d", where, i+1, n)
		}
		if err := r.once(ctx, st, w, v); err != nil {
			return err
		}
	}
	return nil
}

func (r *Runner) once(ctx context.Context, st *Step, where string, vars map[string]string) error {
	timeout := st.Timeout
	if timeout <= 0 {
		timeout = DefaultStepTimeout
	}
	switch {
	case len(st.Parallel) > 0:
		errs := make([]error, len(st.Parallel))
		var wg sync.WaitGroup
		for i := range st.Parallel {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = r.step(ctx, &st.Parallel[i], fmt.Sprintf("%s, parallel %d", where, i+1), vars)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		return nil
	case st.HTTP != nil:
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return doHTTP(ctx, st.HTTP, where, vars)
	case st.GRPC != nil:
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return r.doGRPC(ctx, st.GRPC, where, vars)
	case st.Shell != "":
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		script, err := expand(st.Shell, vars)
		if err != nil {
			return fmt.Errorf("%s: sh: %w", where, err)
		}
		cmd := exec.CommandContext(ctx, "sh", "-c", script)
		cmd.Dir = r.s.Dir
		cmd.SysProcAttr = groupAttr()
		cmd.Cancel = func() error { signalGroup(cmd.Process.Pid, true); return nil }
		// A child the shell left running holds the output pipe open; Wait
		// would wait for it, past the step's timeout, and forever.
		cmd.WaitDelay = stepWaitDelay
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err = r.spawn.start(cmd)
		if err == nil {
			err = cmd.Wait()
			if errors.Is(err, exec.ErrWaitDelay) {
				err = nil // the shell exited well; what it left is killed below
			}
			// What the step left running in its group ends with it:
			// programs that outlive a step are services.
			signalGroup(cmd.Process.Pid, true)
			r.spawn.forget(cmd.Process.Pid)
		}
		if err != nil {
			return fmt.Errorf("%s: sh %q: %v; its output:\n%s", where, script, err, clip(out.String(), 2000))
		}
		return nil
	case st.Until != nil:
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		got, err := r.hits.waitCount(ctx, st.Until.Hits, st.Until.Count)
		if err != nil {
			return fmt.Errorf("%s: waited %v for %d hits of %s, got %d: check that the steps before it reach that line, or raise the step's timeout", where, timeout, st.Until.Count, st.Until.Hits, got)
		}
		return nil
	}
	return fmt.Errorf("%s: %w", where, errNoStep)
}

// stepWaitDelay is how long a shell step's output is read after the
// shell exits.
const stepWaitDelay = 200 * time.Millisecond

func doHTTP(ctx context.Context, h *HTTPStep, where string, vars map[string]string) error {
	url, err := expand(h.URL, vars)
	if err != nil {
		return fmt.Errorf("%s: url: %w", where, err)
	}
	body, err := expand(h.Body, vars)
	if err != nil {
		return fmt.Errorf("%s: body: %w", where, err)
	}
	method := h.Method
	if method == "" {
		method = http.MethodGet
		if body != "" {
			method = http.MethodPost
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if body != "" && strings.HasPrefix(strings.TrimSpace(body), "{") {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, k := range slices.Sorted(maps.Keys(h.Headers)) {
		v, err := expand(h.Headers[k], vars)
		if err != nil {
			return fmt.Errorf("%s: header %s: %w", where, k, err)
		}
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %s %s: %w", where, method, url, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	ok := resp.StatusCode < 400
	if h.Status != 0 {
		ok = resp.StatusCode == h.Status
	}
	if !ok {
		want := "below 400"
		if h.Status != 0 {
			want = strconv.Itoa(h.Status)
		}
		return fmt.Errorf("%s: %s %s answered %d after %v, want %s: %s", where, method, url, resp.StatusCode, time.Since(start).Round(time.Millisecond), want, clip(strings.TrimSpace(string(answer)), 300))
	}
	return nil
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
