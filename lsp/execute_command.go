package lsp

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"

	"go.lsp.dev/protocol"
	"go.lsp.dev/uri"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/source"
)

// ExecuteCommand runs riptrace.showHits, riptrace.toggleTracepoint and
// riptrace.clearHits.
func (s *server) ExecuteCommand(ctx context.Context, params *protocol.ExecuteCommandParams) (protocol.LSPAny, error) {
	switch params.Command {
	case CommandShowHits:
		u, line, err := uriLine(params.Arguments)
		if err != nil {
			return nil, err
		}
		return s.showHits(ctx, u, line)
	case CommandToggleTracepoint:
		u, line, err := uriLine(params.Arguments)
		if err != nil {
			return nil, err
		}
		res, err := s.toggle(ctx, u, line)
		if err != nil {
			return nil, err
		}
		return jsonValue(res), nil
	case CommandClearHits:
		file := ""
		if len(params.Arguments) > 0 {
			var u string
			if err := json.Unmarshal(params.Arguments[0], &u); err != nil {
				return nil, fmt.Errorf("%s takes an optional document URI: %w", CommandClearHits, err)
			}
			file = localPath(uri.URI(u))
		}
		s.mu.Lock()
		agg := s.agg
		s.mu.Unlock()
		agg.Clear(file)
		s.notify()
		return nil, nil
	}
	return nil, fmt.Errorf("unknown command %q: riptrace lsp runs %s, %s and %s", params.Command, CommandShowHits, CommandToggleTracepoint, CommandClearHits)
}

// uriLine reads the arguments [uri, line] (line 0-based, as in LSP).
func uriLine(args []protocol.LSPAny) (uri.URI, int, error) {
	var u string
	var line int
	if len(args) != 2 || json.Unmarshal(args[0], &u) != nil || json.Unmarshal(args[1], &line) != nil || u == "" || line < 0 {
		return "", 0, fmt.Errorf("the command takes [documentURI, line] with a 0-based line")
	}
	return uri.URI(u), line, nil
}

// showHits returns the recent hits of a buffer line as Markdown and shows
// a summary with window/showMessage.
func (s *server) showHits(ctx context.Context, u uri.URI, line int) (protocol.LSPAny, error) {
	v := s.view(u)
	t, ok := v.at(line)
	if !ok {
		return jsonValue("no hits on this line yet"), nil
	}
	md := hoverMarkdown(&t.LineHits, "", s.opts.Now())
	s.client.ShowMessage(ctx, &protocol.ShowMessageParams{Type: protocol.MessageTypeInfo, Message: md})
	return jsonValue(md), nil
}

// ToggleResult answers riptrace.toggleTracepoint.
type ToggleResult struct {
	ID       string         `json:"id"`
	Traced   bool           `json:"traced"` // declared now; false: removed
	Location fleet.Location `json:"location"`
	Backend  string         `json:"backend"` // the backend setting it was declared for
}

// toggle declares a tracepoint at a buffer line through the server's lease,
// or removes the one it declared there.
func (s *server) toggle(ctx context.Context, u uri.URI, cur int) (*ToggleResult, error) {
	file := localPath(u)
	s.mu.Lock()
	lease, cfg := s.lease, s.cfg
	line := cur + 1
	if d := s.docs[file]; d != nil {
		var ok bool
		if line, ok = d.original(cur); !ok {
			s.mu.Unlock()
			return nil, fmt.Errorf("line %d was added since the file was opened: no running process has it; save, rebuild and redeploy first", cur+1)
		}
	}
	s.mu.Unlock()
	if cfg.Recording != "" {
		return nil, fmt.Errorf("the riptrace setting recording shows %s, and nothing is traced: clear it to trace lines", cfg.Recording)
	}
	if lease == nil {
		// Right after starting or a change of settings the server is still
		// connecting: give it a moment before saying so.
		lease = s.waitLease(ctx, leaseWait)
	}
	if lease == nil {
		return nil, fmt.Errorf("not connected to NATS at %s yet: start it with `riptrace server`, or set \"nats\" in the riptrace settings", cfg.NATS)
	}
	loc := source.Locate(file, line)
	sel := fleet.Selector{Hosts: cfg.Hosts, Processes: cfg.Processes}
	// The id names the checkout's line, not where it runs: a toggle after
	// a deploy still finds the tracepoint to remove.
	id := tracepointID(loc, sel)
	res := &ToggleResult{ID: id, Location: loc, Backend: cmp.Or(cfg.Backend, "auto")}
	s.declMu.Lock()
	defer s.declMu.Unlock()
	if slices.Contains(lease.IDs(), id) {
		if err := lease.Remove(ctx, id); err != nil {
			return nil, err
		}
		s.mu.Lock()
		delete(s.toggled, id)
		s.mu.Unlock()
		return res, nil
	}
	s.mu.Lock()
	fl := s.fleet
	s.mu.Unlock()
	if fl != nil {
		// As the debug adapter and riptrace trace do: the line is mapped
		// into each revision the fleet runs.
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r := source.Resolve(hctx, fl, nil, []source.Line{{File: file, Line: line, Revision: cfg.Revision}})
		cancel()
		if r.FleetErr != nil {
			s.log.Warn("mapping a toggled line into the fleet's revisions", "err", r.FleetErr)
		}
		if r.Errs[0] != nil {
			s.log.Warn("mapping a toggled line into the fleet's revisions", "err", r.Errs[0])
		}
		res.Location = r.Locations[0]
	}
	loc = res.Location
	host, _ := os.Hostname()
	spec := &fleet.Spec{
		ID:       id,
		Location: loc,
		Selector: sel,
		Capture:  cfg.capture(),
		Limits:   fleet.Limits{MaxHitsPerSecond: fleet.DefaultMaxHitsPerSecond},
		Backend:  cfg.Backend,
		Owner:    fmt.Sprintf("riptrace lsp (pid %d on %s)", os.Getpid(), host),
	}
	if err := lease.Declare(ctx, spec); err != nil {
		return nil, err
	}
	if loc.Module != "" {
		s.mu.Lock()
		if s.toggled != nil && s.lease == lease {
			s.toggled[id] = toggledLine{file: file, line: line, revision: cfg.Revision, spec: *spec}
		}
		s.mu.Unlock()
	}
	res.Traced = true
	return res, nil
}

// leaseWait is how long a toggle waits for the server to connect.
const leaseWait = 5 * time.Second

// waitLease returns the lease once the server is connected, or nil after d.
func (s *server) waitLease(ctx context.Context, d time.Duration) *fleet.Lease {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		lease := s.lease
		s.mu.Unlock()
		if lease != nil {
			return lease
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// tracepointID names the editor's tracepoint at loc for sel: toggling the
// same line twice finds the same id.
func tracepointID(loc fleet.Location, sel fleet.Selector) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%q\x00%q", loc, sel.Hosts, sel.Processes))
	return "lsp-" + hex.EncodeToString(sum[:8])
}

func jsonValue(v any) protocol.LSPAny {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encoding %T: %v", v, err))
	}
	return protocol.LSPAny(b)
}

func jsonString(s string) protocol.LSPAny { return jsonValue(s) }
func jsonInt(n int) protocol.LSPAny       { return jsonValue(n) }
