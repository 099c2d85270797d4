package lsp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/source"
)

// leaseTTL is how long the editor's tracepoints outlive a language server
// that died without removing them.
const leaseTTL = time.Minute

// restartIngest (re)starts reading the hit stream with the current
// configuration: the aggregate starts over from the configured history, so
// a change of hosts or processes is applied to what is shown, too.
func (s *server) restartIngest() {
	s.stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.stopIngest, s.ingestDone = cancel, done
	s.agg = NewAggregate(s.cfg.MaxRecent)
	cfg, ws, agg := s.cfg, s.workspace(), s.agg
	go func() {
		defer close(done)
		if cfg.Recording != "" {
			s.ingestRecording(cfg, newHitMapper(ws), agg)
			return
		}
		s.ingest(ctx, cfg, newHitMapper(ws), agg)
	}()
	s.notify()
}

// ingest connects to NATS (retrying until ctx ends), replays cfg's history
// and then reads live hits into agg, through the timeline: hovers list hits
// in the order they ran, the order every client shows. A reader that fails
// is reopened after the last sequence read, so no hit is counted twice.
func (s *server) ingest(ctx context.Context, cfg Config, local *hitMapper, agg *Aggregate) {
	var c *fleet.Client
	for warned := false; ; warned = true {
		var err error
		c, err = fleet.Connect(ctx, cfg.NATS, fleet.ClientOptions{Prefix: cfg.Prefix, Name: fmt.Sprintf("riptrace lsp (pid %d)", os.Getpid()), Credentials: cfg.credentials()})
		if err == nil {
			break
		}
		s.log.Warn("connecting to the fleet", "err", err)
		if !warned {
			s.showError(credentialError(err).Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
	lease := c.NewLease(leaseTTL)
	s.mu.Lock()
	s.lease, s.fleet, s.toggled = lease, c, make(map[string]toggledLine)
	s.mu.Unlock()
	// Following ends before the lease removes the tracepoints, which it
	// would otherwise declare again.
	followCtx, stopFollowing := context.WithCancel(ctx)
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		s.followRevisions(followCtx, c, lease)
	}()
	defer func() {
		stopFollowing()
		<-followed
		s.mu.Lock()
		s.lease, s.fleet, s.toggled = nil, nil, nil
		s.mu.Unlock()
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := lease.Close(cctx); err != nil {
			s.log.Warn("removing the editor's tracepoints", "err", err)
		}
		cancel()
		c.Close()
	}()

	opts := fleet.HitOptions{Replay: true}
	if h := cfg.history(); h > 0 {
		opts = fleet.HitOptions{Since: time.Now().Add(-h)}
	}
	var skipped int
	add := func(p fleet.Placed) { s.add(&cfg, local, agg, p, &skipped) }
	for ctx.Err() == nil {
		r, err := c.Timeline(ctx, opts, cfg.timeline())
		if err != nil {
			s.log.Warn("opening the hit stream", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		r.Notice = func(n string) { s.log.Info("timeline", "notice", n) }
		for {
			p, err := r.Next(ctx)
			if err != nil {
				var fe *fleet.Error
				if errors.As(err, &fe) {
					s.log.Warn("skipping a malformed hit", "err", err)
					continue
				}
				if ctx.Err() == nil {
					s.log.Warn("reading the hit stream", "err", err)
				}
				break
			}
			add(p)
		}
		// The hits the timeline still holds go out in order before the
		// stream is read again after the last message read.
		for _, p := range r.Flush() {
			add(p)
		}
		if seq := r.LastSeq(); seq > 0 {
			opts = fleet.HitOptions{StartSeq: seq + 1}
		}
		r.Close()
	}
}

// add adds p to agg at its local line, if cfg admits it; skipped counts
// the hits outside the workspace, the first few of which are logged.
func (s *server) add(cfg *Config, local *hitMapper, agg *Aggregate, p fleet.Placed, skipped *int) {
	if !cfg.admits(&p.Hit) {
		return
	}
	file, line, ok := local.local(&p.Hit)
	if !ok {
		if *skipped++; *skipped <= 5 {
			s.log.Info("hit in a file outside the workspace, or on a line the checkout no longer has", "file", p.File, "line", p.Line, "revision", p.Process.Revision)
		}
		return
	}
	p.Line = line
	agg.Add(file, p)
	s.notify()
}

// hitMapper maps where hits happened to the workspace: the file by module
// path + path in module (source.Workspace), and, in a git checkout, the line
// through the diff between the process's revision and the checkout (as the
// debug adapter and riptrace trace do). Answers are cached per remote file,
// revision and line: the ingest loop sees the same few lines again and again.
type hitMapper struct {
	ws    *source.Workspace
	repo  *source.Repo // nil outside a git checkout
	cache map[hitKey]hitPlace
}

type hitKey struct {
	file     string
	revision string
	modified bool
	line     int
}

type hitPlace struct {
	file string
	line int
	ok   bool
}

func newHitMapper(ws *source.Workspace) *hitMapper {
	m := &hitMapper{ws: ws, cache: make(map[hitKey]hitPlace)}
	m.repo, _ = source.OpenRepo(ws.Root)
	return m
}

func (m *hitMapper) local(h *fleet.Hit) (string, int, bool) {
	k := hitKey{h.File, h.Process.Revision, h.Process.Modified, h.Line}
	p, seen := m.cache[k]
	if !seen {
		p = m.place(h)
		m.cache[k] = p
	}
	return p.file, p.line, p.ok
}

func (m *hitMapper) place(h *fleet.Hit) hitPlace {
	if m.repo != nil {
		file, line, err := m.repo.LocalHit(m.ws, h.File, h.Line, h.Process)
		var le *source.LineError
		switch {
		case err == nil:
			return hitPlace{file, line, true}
		case errors.As(err, &le):
			return hitPlace{} // the line is not in the checkout: no lens for it
		}
	}
	file, ok := m.ws.Local(h.File)
	return hitPlace{file, h.Line, ok}
}
