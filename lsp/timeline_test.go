package lsp_test

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"go.lsp.dev/protocol"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/internal/testsupport"
	"github.com/riptrace/riptrace/lsp"
)

// hoverHit is one hit listed in a hover: its place in the timeline, when
// it ran, and who ran it.
var hoverHit = regexp.MustCompile("(?m)^- `#(\\d+)` (\\d\\d:\\d\\d:\\d\\d\\.\\d{3}) [^\\[]+\\[(\\d+)\\] g(\\d+)")

// TestHoverTimelineOrder: the hits a hover lists are those of the
// timeline, with the places and times that `riptrace timeline` (a
// fleet.TimelineReader over the same stream) gives them, latest first.
func TestHoverTimelineOrder(t *testing.T) {
	t.Parallel()
	e := newFleetEnv(t)
	// A clock server, so that the hits carry the agent's clock.
	stopClock, err := e.c.ServeClock()
	if err != nil {
		t.Fatal(err)
	}
	defer stopClock()
	s := startSession(t, lsp.Options{Log: testLogger(t)})
	s.initialize(e.dir, map[string]any{"nats": e.url, "processes": []string{e.exe}, "history": "1m"})
	u, _ := s.open(e.src)
	e.declare(t)
	line := e.line - 1
	s.awaitLens(u, line, regexp.MustCompile(`^● ([2-9]\d|\d{3,}) hits`))

	var md string
	var listed [][]string
	testsupport.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		hov, err := s.server.Hover(ctx(t), &protocol.HoverParams{TextDocumentPositionParams: protocol.TextDocumentPositionParams{
			TextDocument: protocol.TextDocumentIdentifier{URI: u}, Position: protocol.Position{Line: uint32(line)},
		}})
		if err != nil || hov == nil {
			return fmt.Errorf("hover: %v, %v", hov, err)
		}
		md = hov.Contents.(*protocol.MarkupContent).Value
		if listed = hoverHit.FindAllStringSubmatch(md, -1); len(listed) < 5 {
			return fmt.Errorf("hover lists %d hits, want 5:\n%s", len(listed), md)
		}
		return nil
	})

	// The same stream read by another client, from its start.
	rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := e.c.Timeline(rctx, fleet.HitOptions{Replay: true}, fleet.TimelineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	last, _ := strconv.ParseUint(listed[0][1], 10, 64)
	byOrder := make(map[uint64]fleet.Placed)
	for uint64(len(byOrder)) < last {
		p, err := tr.Next(rctx)
		if err != nil {
			t.Fatalf("reading the timeline up to #%d: %v", last, err)
		}
		byOrder[p.Order] = p
	}
	prev := uint64(0)
	for i, l := range listed {
		order, _ := strconv.ParseUint(l[1], 10, 64)
		if i > 0 && order >= prev {
			t.Errorf("hover lists #%d after #%d: want the latest in the timeline first\n%s", order, prev, md)
		}
		prev = order
		p, ok := byOrder[order]
		if !ok {
			t.Fatalf("hover lists #%d, which the timeline does not have\n%s", order, md)
		}
		if at := p.CoordinatedTime.UTC().Format("15:04:05.000"); l[2] != at || l[3] != strconv.Itoa(p.Pid) || l[4] != strconv.FormatInt(p.Goroutine, 10) {
			t.Errorf("hover lists #%d as %s [%s] g%s; the timeline has it at %s [%d] g%d (stream #%d)", order, l[2], l[3], l[4], at, p.Pid, p.Goroutine, p.Seq)
		}
		if p.Clock == nil {
			t.Errorf("timeline hit #%d has no clock: %s", order, p.Note)
		}
	}
}

// TestHoverGroup: with riptrace.group, each hit a hover lists names its
// request by the captured value the setting names (the target's argument
// n here).
func TestHoverGroup(t *testing.T) {
	t.Parallel()
	e := newFleetEnv(t)
	s := startSession(t, lsp.Options{Log: testLogger(t)})
	s.initialize(e.dir, map[string]any{"nats": e.url, "processes": []string{e.exe}, "history": "1m", "group": []string{"n"}})
	u, _ := s.open(e.src)
	e.declare(t)
	line := e.line - 1
	s.awaitLens(u, line, regexp.MustCompile(`^● ([5-9]|\d{2,}) hits`))

	grouped := regexp.MustCompile("(?m)^- `#\\d+` .* · request `(\\d+)`[^`]*: `.*\\bn=(\\d+)")
	testsupport.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		hov, err := s.server.Hover(ctx(t), &protocol.HoverParams{TextDocumentPositionParams: protocol.TextDocumentPositionParams{
			TextDocument: protocol.TextDocumentIdentifier{URI: u}, Position: protocol.Position{Line: uint32(line)},
		}})
		if err != nil || hov == nil {
			return fmt.Errorf("hover: %v, %v", hov, err)
		}
		md := hov.Contents.(*protocol.MarkupContent).Value
		listed := hoverHit.FindAllString(md, -1)
		found := grouped.FindAllStringSubmatch(md, -1)
		if len(listed) < 5 || len(found) != len(listed) {
			return fmt.Errorf("hover lists %d hits, %d of them with a request, want 5 or more, all:\n%s", len(listed), len(found), md)
		}
		for _, m := range found {
			if m[1] != m[2] {
				t.Fatalf("a hit of n=%s names the request %s:\n%s", m[2], m[1], md)
			}
		}
		return nil
	})
}
