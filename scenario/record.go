package scenario

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/riptrace/riptrace/fleet"
)

// A recording is a run's hits and its agents' watermarks, in the order the
// hit stream carried them, so that expectations can be evaluated again
// (Replay) without the services: a JSON object per line, first a header,
// then one {"hit": …} or {"watermark": …} per message, hits named by their
// tracepoint's name in the scenario.

// RecordingVersion is the version of the recording format.
const RecordingVersion = 1

// recordingHeader is a recording's first line.
type recordingHeader struct {
	Recording int       `json:"riptraceRecording"` // RecordingVersion
	Scenario  string    `json:"scenario"`
	Recorded  time.Time `json:"recorded"`
	Hits      int       `json:"hits"`
	// Errors and Notes are the run's, as its result said them.
	Errors []string `json:"errors,omitempty"`
	Notes  []string `json:"notes,omitempty"`
}

type recordedMessage struct {
	Hit       *fleet.Hit       `json:"hit,omitempty"`
	Watermark *fleet.Watermark `json:"watermark,omitempty"`
}

// Record writes the hits and watermarks of the run so far as a recording;
// res, if not nil, is the run's result, whose errors and notes it keeps.
func (r *Runner) Record(w io.Writer, res *Result) error {
	r.hits.mu.Lock()
	msgs := append([]message(nil), r.hits.msgs...)
	r.hits.mu.Unlock()
	return writeRecording(w, r.s.Name, msgs, res)
}

func writeRecording(w io.Writer, name string, msgs []message, res *Result) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	h := recordingHeader{Recording: RecordingVersion, Scenario: name, Recorded: time.Now().UTC()}
	for _, m := range msgs {
		if m.hit != nil {
			h.Hits++
		}
	}
	if res != nil {
		h.Errors, h.Notes = res.Errors, res.Notes
	}
	if err := enc.Encode(h); err != nil {
		return fmt.Errorf("writing the recording: %w", err)
	}
	for _, m := range msgs {
		if err := enc.Encode(recordedMessage{Hit: m.hit, Watermark: m.wm}); err != nil {
			return fmt.Errorf("writing the recording: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing the recording: %w", err)
	}
	return nil
}

// maxRecordedLine bounds one line of a recording: a hit with its values.
const maxRecordedLine = 16 << 20

// Recording is a recording read back (ReadRecording).
type Recording struct {
	Scenario string
	Recorded time.Time
	Hits     int
	// Errors and Notes are the recorded run's.
	Errors, Notes []string
	msgs          []message
}

// ReadRecording reads a recording that Runner.Record wrote; name names it
// in errors.
func ReadRecording(rec io.Reader, name string) (*Recording, error) {
	sc := bufio.NewScanner(rec)
	sc.Buffer(make([]byte, 64<<10), maxRecordedLine)
	bad := func(line int, format string, args ...any) error {
		return fmt.Errorf("%s:%d: %s: record it again with riptrace run --record DIR", name, line, fmt.Sprintf(format, args...))
	}
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("reading the recording %s: %w", name, err)
		}
		return nil, bad(1, "empty, not a recording")
	}
	var h recordingHeader
	if err := json.Unmarshal(sc.Bytes(), &h); err != nil || h.Recording == 0 {
		return nil, bad(1, "not a recording of riptrace run (its first line has no riptraceRecording)")
	}
	if h.Recording != RecordingVersion {
		return nil, bad(1, "a recording of version %d; this riptrace reads version %d", h.Recording, RecordingVersion)
	}
	r := &Recording{Scenario: h.Scenario, Recorded: h.Recorded, Hits: h.Hits, Errors: h.Errors, Notes: h.Notes}
	hits := 0
	for line := 2; sc.Scan(); line++ {
		var m recordedMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return nil, bad(line, "not a recorded message: %v", err)
		}
		if (m.Hit == nil) == (m.Watermark == nil) {
			return nil, bad(line, "want one of hit and watermark")
		}
		if m.Hit != nil {
			hits++
		}
		r.msgs = append(r.msgs, message{hit: m.Hit, wm: m.Watermark})
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("reading the recording %s: a line longer than %d bytes: this is not a recording", name, maxRecordedLine)
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
	return order(r.msgs, topts)
}

// Replay evaluates s's expectations over a recording, as Check would have
// over the run that made it; nothing is started. name names the recording
// in errors. The result notes what was replayed, and keeps the recorded
// run's errors as notes: they are the recording's story, not this
// evaluation's.
func Replay(s *Scenario, rec io.Reader, name string) (*Result, error) {
	if err := s.Check(); err != nil {
		return nil, err
	}
	r, err := ReadRecording(rec, name)
	if err != nil {
		return nil, err
	}
	tolerance := DefaultClockTolerance
	if s.ClockTolerance != nil {
		tolerance = *s.ClockTolerance
	}
	t0 := time.Now()
	res := Evaluate(r.Timeline(fleet.TimelineOptions{}), s.Expect, tolerance)
	res.Timing.Evaluate = time.Since(t0)
	res.Name = s.Name
	res.Notes = append(res.Notes, fmt.Sprintf("replayed %d hits of scenario %s recorded at %s in %s", r.Hits, r.Scenario, r.Recorded.Format(time.RFC3339), name))
	for _, e := range r.Errors {
		res.Notes = append(res.Notes, "the recorded run failed: "+e)
	}
	res.Notes = append(res.Notes, r.Notes...)
	return res, nil
}
