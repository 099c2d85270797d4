package scenario

import (
	"fmt"
	"io"
	"time"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/scenario/recording"
)

// RecordingVersion is the version of the recording format (package
// recording holds it, so that the front ends can read recordings).
const RecordingVersion = recording.Version

// Recording is a recording read back (ReadRecording).
type Recording = recording.Recording

// Record writes the hits and watermarks of the run so far as a recording;
// res, if not nil, is the run's result, whose errors and notes it keeps.
func (r *Runner) Record(w io.Writer, res *Result) error {
	r.hits.mu.Lock()
	msgs := append([]recording.Message(nil), r.hits.msgs...)
	r.hits.mu.Unlock()
	var errs, notes []string
	if res != nil {
		errs, notes = res.Errors, res.Notes
	}
	return recording.Write(w, r.s.Name, msgs, errs, notes)
}

// ReadRecording reads a recording that Runner.Record wrote; name names it
// in errors.
func ReadRecording(rec io.Reader, name string) (*Recording, error) {
	return recording.Read(rec, name)
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
