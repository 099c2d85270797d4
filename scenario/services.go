package scenario

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// service is a started Service. Its process leads its own process group,
// and stop signals that group: what the service started goes with it.
type service struct {
	name  string
	cmd   *exec.Cmd
	spawn *spawner      // started it, and watches its group until stop
	done  chan struct{} // closed once cmd.Wait returned
	// mu guards log, the service's last lines for error messages.
	mu  sync.Mutex
	log []string
}

const keptLogLines = 20

func (s *service) keep(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.log) == keptLogLines {
		s.log = s.log[1:]
	}
	s.log = append(s.log, line)
}

// tail is the service's last lines, for an error message.
func (s *service) tail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.log) == 0 {
		return " (it printed nothing)"
	}
	return "; its last lines:\n    " + strings.Join(s.log, "\n    ")
}

// startService starts sv, from sp's thread, and waits until its probe
// passes. vars receives
// the probe's named groups as NAME.GROUP, and NAME.pid.
func startService(ctx context.Context, sp *spawner, dir string, sv *Service, vars map[string]string, logw io.Writer) (*service, error) {
	command, err := expand(sv.Command, vars)
	if err != nil {
		return nil, fmt.Errorf("service %s: command: %w", sv.Name, err)
	}
	if strings.Contains(command, "/") && !filepath.IsAbs(command) {
		command = filepath.Join(dir, command)
	}
	args := make([]string, len(sv.Args))
	for i, a := range sv.Args {
		if args[i], err = expand(a, vars); err != nil {
			return nil, fmt.Errorf("service %s: args[%d]: %w", sv.Name, i, err)
		}
	}
	cmd := exec.Command(command, args...)
	cmd.Dir = dir
	if sv.Dir != "" {
		cmd.Dir = sv.Dir
		if !filepath.IsAbs(sv.Dir) {
			cmd.Dir = filepath.Join(dir, sv.Dir)
		}
	}
	cmd.Env = os.Environ()
	for _, k := range slices.Sorted(maps.Keys(sv.Env)) {
		v, err := expand(sv.Env[k], vars)
		if err != nil {
			return nil, fmt.Errorf("service %s: env %s: %w", sv.Name, k, err)
		}
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.SysProcAttr = groupAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	var re *regexp.Regexp
	if sv.Ready.Log != "" {
		if re, err = regexp.Compile(sv.Ready.Log); err != nil {
			return nil, fmt.Errorf("service %s: ready.log %q: %w", sv.Name, sv.Ready.Log, err)
		}
	}
	if err := sp.start(cmd); err != nil {
		return nil, fmt.Errorf("starting service %s: %w (check its command and dir)", sv.Name, err)
	}
	s := &service{name: sv.Name, cmd: cmd, spawn: sp, done: make(chan struct{})}
	matched := make(chan []string, 1)
	var readers sync.WaitGroup
	for _, r := range []io.Reader{stdout, stderr} {
		readers.Add(1)
		go func() {
			defer readers.Done()
			sc := bufio.NewScanner(r)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				line := sc.Text()
				s.keep(line)
				if logw != nil {
					fmt.Fprintf(logw, "%s: %s\n", sv.Name, line)
				}
				if re != nil {
					if m := re.FindStringSubmatch(line); m != nil {
						select {
						case matched <- m:
						default:
						}
					}
				}
			}
			io.Copy(io.Discard, r)
		}()
	}
	go func() {
		// Wait only after the pipes are drained, as os/exec asks.
		readers.Wait()
		cmd.Wait()
		close(s.done)
	}()
	vars[sv.Name+".pid"] = fmt.Sprint(cmd.Process.Pid)
	if err := s.waitReady(ctx, sv, re, matched, vars); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *service) waitReady(ctx context.Context, sv *Service, re *regexp.Regexp, matched <-chan []string, vars map[string]string) error {
	timeout := sv.Ready.Timeout
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	probe := func() error { return nil }
	what := "started"
	switch {
	case re != nil:
		what = fmt.Sprintf("printed a line matching %q", sv.Ready.Log)
		probe = func() error {
			select {
			case m := <-matched:
				for i, name := range re.SubexpNames() {
					if name != "" {
						vars[sv.Name+"."+name] = m[i]
					}
				}
				return nil
			default:
				return errors.New("no line yet")
			}
		}
	case sv.Ready.HTTP != "":
		url, err := expand(sv.Ready.HTTP, vars)
		if err != nil {
			return fmt.Errorf("service %s: ready.http: %w", sv.Name, err)
		}
		what = "answered GET " + url
		probe = func() error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode >= 500 {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		}
	case sv.Ready.TCP != "":
		addr, err := expand(sv.Ready.TCP, vars)
		if err != nil {
			return fmt.Errorf("service %s: ready.tcp: %w", sv.Name, err)
		}
		what = "accepted a connection on " + addr
		probe = func() error {
			c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
			if err == nil {
				c.Close()
			}
			return err
		}
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := probe(); err == nil {
			return nil
		}
		select {
		case <-s.done:
			if probe() == nil {
				return nil // ready, then gone: the run reports the exit
			}
			return fmt.Errorf("service %s exited (%v) before it %s%s", sv.Name, s.cmd.ProcessState, what, s.tail())
		case <-ctx.Done():
			return fmt.Errorf("service %s was not ready within %v: it never %s. Check its command and probe, or raise ready.timeout%s", sv.Name, timeout, what, s.tail())
		case <-tick.C:
		}
	}
}

// stopGrace is how long a service has to exit after SIGTERM.
const stopGrace = 5 * time.Second

// stop ends the service's process group: SIGTERM, then SIGKILL after
// stopGrace, and waits for the service itself.
func (s *service) stop() {
	pid := s.cmd.Process.Pid
	signalGroup(pid, false)
	select {
	case <-s.done:
	case <-time.After(stopGrace):
	}
	// Whatever is left in the group (children of the service) goes too.
	signalGroup(pid, true)
	<-s.done
	s.spawn.forget(pid)
}

// exited reports whether the service has exited.
func (s *service) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

var varRe = regexp.MustCompile(`\$\{([A-Za-z0-9_.-]+)\}`)

// expand replaces ${NAME} in s with vars; an unknown name is an error that
// lists the known ones.
func expand(s string, vars map[string]string) (string, error) {
	var missing string
	out := varRe.ReplaceAllStringFunc(s, func(m string) string {
		name := m[2 : len(m)-1]
		v, ok := vars[name]
		if !ok && missing == "" {
			missing = name
		}
		return v
	})
	if missing != "" {
		return "", fmt.Errorf("${%s} is not defined: the variables are %s (a service's ready.log names its groups, as (?P<addr>\\S+))", missing, strings.Join(slices.Sorted(maps.Keys(vars)), ", "))
	}
	return out, nil
}
