package lsp

import (
	"path/filepath"

	"github.com/riptrace/riptrace/scenario/recording"
)

// ingestRecording shows the hits of the recording cfg names (riptrace run
// --record DIR) as ingest shows the fleet's: in the order they ran, at
// their local lines, as lenses, hints and hovers. Nothing is connected to
// and nothing is traced.
func (s *server) ingestRecording(cfg Config, local *hitMapper, agg *Aggregate) {
	path := cfg.Recording
	if !filepath.IsAbs(path) {
		path = filepath.Join(local.ws.Root, path)
	}
	rec, err := recording.Open(path)
	if err != nil {
		s.showError("the setting recording: " + err.Error())
		return
	}
	s.log.Info("showing a recording", "file", path, "scenario", rec.Scenario, "hits", rec.Hits)
	var skipped int
	for _, p := range rec.Timeline(cfg.timeline()) {
		s.add(&cfg, local, agg, p, &skipped)
	}
}
