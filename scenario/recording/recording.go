// Package recording is the file format of a recorded scenario run: the
// hits of the run and its agents' watermarks, in the order the hit stream
// carried them, so that the run can be evaluated again (scenario.Replay)
// and replayed where hits are shown (riptrace timeline --recording, the
// debug adapter's "recording" attribute, the language server's
// "recording" setting) without the services.
//
// A recording is a JSON object per line: first a header, then one
// {"hit": …} or {"watermark": …} per message, hits named by their
// tracepoint's name in the scenario. The package depends on fleet alone,
// so that every front end can read a recording without the runner.
package recording

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/riptrace/riptrace/fleet"
)

// Version is the version of the recording format.
const Version = 1

// header is a recording's first line.
type header struct {
	Recording int       `json:"riptraceRecording"` // Version
	Scenario  string    `json:"scenario"`
	Recorded  time.Time `json:"recorded"`
	Hits      int       `json:"hits"`
	// Errors and Notes are the run's, as its result said them.
	Errors []string `json:"errors,omitempty"`
	Notes  []string `json:"notes,omitempty"`
}

// Message is a hit or an agent's watermark, as the stream carried it:
// exactly one is set.
type Message struct {
	Hit       *fleet.Hit       `json:"hit,omitempty"`
	Watermark *fleet.Watermark `json:"watermark,omitempty"`
}

// Write writes msgs as the recording of scenario; errors and notes are the
// run's result's, kept for who replays it.
func Write(w io.Writer, scenario string, msgs []Message, errors, notes []string) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	h := header{Recording: Version, Scenario: scenario, Recorded: time.Now().UTC(), Errors: errors, Notes: notes}
	for _, m := range msgs {
		if m.Hit != nil {
			h.Hits++
		}
	}
	if err := enc.Encode(h); err != nil {
		return fmt.Errorf("writing the recording: %w", err)
	}
	for _, m := range msgs {
		if err := enc.Encode(m); err != nil {
			return fmt.Errorf("writing the recording: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing the recording: %w", err)
	}
	return nil
}

// maxLine bounds one line of a recording: a hit with its values.
const maxLine = 16 << 20

// Recording is a recording read back (Read).
type Recording struct {
	Scenario string
	Recorded time.Time
	Hits     int
	// Errors and Notes are the recorded run's.
	Errors, Notes []string
	// Messages are the hits and watermarks in the order the stream
	// carried them.
	Messages []Message
}

// Open reads the recording at path.
func Open(path string) (*Recording, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening the recording: %w", err)
	}
	defer f.Close()
	return Read(f, path)
}

// Read reads a recording that Write wrote; name names it in errors.
func Read(rec io.Reader, name string) (*Recording, error) {
	sc := bufio.NewScanner(rec)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	bad := func(line int, format string, args ...any) error {
		return fmt.Errorf("%s:%d: %s: record it again with riptrace run --record DIR", name, line, fmt.Sprintf(format, args...))
	}
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("reading the recording %s: %w", name, err)
		}
		return nil, bad(1, "empty, not a recording")
	}
	var h header
	if err := json.Unmarshal(sc.Bytes(), &h); err != nil || h.Recording == 0 {
		return nil, bad(1, "not a recording of riptrace run (its first line has no riptraceRecording)")
	}
	if h.Recording != Version {
		return nil, bad(1, "a recording of version %d; this riptrace reads version %d", h.Recording, Version)
	}
	r := &Recording{Scenario: h.Scenario, Recorded: h.Recorded, Hits: h.Hits, Errors: h.Errors, Notes: h.Notes}
	hits := 0
	for line := 2; sc.Scan(); line++ {
		var m Message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return nil, bad(line, "not a recorded message: %v", err)
		}
		if (m.Hit == nil) == (m.Watermark == nil) {
			return nil, bad(line, "want one of hit and watermark")
		}
		if m.Hit != nil {
			hits++
		}
		r.Messages = append(r.Messages, m)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("reading the recording %s: a line longer than %d bytes: this is not a recording", name, maxLine)
		}
		return nil, fmt.Errorf("reading the recording %s: %w", name, err)
	}
	if hits != h.Hits {
		return nil, bad(1, "the header counts %d hits, the file holds %d: it was cut short", h.Hits, hits)
	}
	return r, nil
}

// Timeline is the recorded hits in the order they ran, as the run saw
// them (Order), placed with topts (request groups, for one).
func (r *Recording) Timeline(topts fleet.TimelineOptions) []fleet.Placed {
	return Order(r.Messages, topts)
}

// Order puts messages, in the order the stream carried them, in the order
// the hits ran: the fleet's timeline, with each hit's coordinated time and
// clock bound. It is the one place a run, live or recorded, orders hits.
func Order(msgs []Message, topts fleet.TimelineOptions) []fleet.Placed {
	tl := fleet.NewTimeline(topts)
	var placed []fleet.Placed
	for _, m := range msgs {
		if m.Watermark != nil {
			placed = append(placed, tl.AddWatermark(*m.Watermark)...)
		} else if m.Hit != nil {
			placed = append(placed, tl.AddHit(*m.Hit)...)
		}
	}
	// Every hit the run will see is in: release the held ones.
	placed = append(placed, tl.Flush()...)
	// A late hit is released when it arrives, out of its place; the run
	// judges after the fact, so each hit goes where its coordinated time
	// says it ran.
	sort.SliceStable(placed, func(i, j int) bool { return placed[i].CoordinatedTime.Before(placed[j].CoordinatedTime) })
	return placed
}
