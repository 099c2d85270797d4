package scenario_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/riptrace/riptrace/scenario"
)

// TestRecordReplay records a run of the passing example, replays its
// expectations over the recording with the same verdicts, then replays the
// failing example's expectations over it: each fails as it does live.
func TestRecordReplay(t *testing.T) {
	s := load(t, "checkout.yaml")
	var rec bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	live, err := scenario.Run(ctx, s, scenario.Options{Record: &rec})
	if err != nil {
		t.Fatal(err)
	}
	live.Report(t)
	recording := rec.String()

	replayed, err := scenario.Replay(s, strings.NewReader(recording), "checkout.hits.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if !replayed.OK() || replayed.Hits != live.Hits || len(replayed.Outcomes) != len(live.Outcomes) {
		t.Fatalf("the replay found OK=%v over %d hits, %d outcomes; the run OK=%v over %d hits, %d outcomes", replayed.OK(), replayed.Hits, len(replayed.Outcomes), live.OK(), live.Hits, len(live.Outcomes))
	}
	for i, o := range replayed.Outcomes {
		if o.Title != live.Outcomes[i].Title || o.Detail != live.Outcomes[i].Detail {
			t.Errorf("outcome %d: replayed %q: %q, live %q: %q", i, o.Title, o.Detail, live.Outcomes[i].Title, live.Outcomes[i].Detail)
		}
	}
	if len(replayed.Notes) == 0 || !strings.Contains(replayed.Notes[0], "replayed 12 hits of scenario checkout") {
		t.Errorf("the replay does not say what it replayed: %q", replayed.Notes)
	}

	for kind, want := range failing {
		res, err := scenario.Replay(load(t, "checkout-fails-"+kind+".yaml"), strings.NewReader(recording), "checkout.hits.jsonl")
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Outcomes) != 1 || res.Outcomes[0].OK || !strings.Contains(res.Outcomes[0].Detail, want[0]) {
			t.Errorf("%s: replayed %+v, want a failure saying %q", kind, res.Outcomes, want[0])
		}
	}

	// Recordings that are not, or no longer, whole.
	lines := strings.SplitAfter(recording, "\n")
	lastHit := 0
	for i, l := range lines {
		if strings.HasPrefix(l, `{"hit":`) {
			lastHit = i
		}
	}
	for _, c := range []struct{ name, text, want string }{
		{"empty", "", "x.jsonl:1: empty, not a recording"},
		{"not a recording", `{"name":"checkout"}` + "\n", "x.jsonl:1: not a recording of riptrace run"},
		{"a later version", `{"riptraceRecording":9}` + "\n", "x.jsonl:1: a recording of version 9; this riptrace reads version 1"},
		{"a broken line", lines[0] + lines[1] + "{\"hit\": nope}\n", "x.jsonl:3: not a recorded message"},
		{"neither hit nor watermark", lines[0] + "{}\n", "x.jsonl:2: want one of hit and watermark"},
		{"cut short", strings.Join(lines[:lastHit], ""), "x.jsonl:1: the header counts 12 hits, the file holds"},
	} {
		_, err := scenario.Replay(s, strings.NewReader(c.text), "x.jsonl")
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "record it again with riptrace run --record DIR") {
			t.Errorf("%s: want an error saying %q and what to do, got %v", c.name, c.want, err)
		}
	}
}

// FuzzReplay checks that no recording panics the replay, and that a
// recording it accepts is evaluated over exactly the hits it holds.
func FuzzReplay(f *testing.F) {
	s, err := scenario.Parse([]byte(base+"expect:\n  - {hits: hit, count: \">= 0\"}\n  - {hits: hit, where: 'x > 1'}\n  - {order: [hit, hit], by: {hit: x}}\n"), "f.yaml")
	if err != nil {
		f.Fatal(err)
	}
	header := `{"riptraceRecording":1,"scenario":"f","recorded":"2026-12-05T00:00:00Z","hits":2}` + "\n"
	hit := `{"hit":{"v":1,"tracepoint":"hit","host":"h","pid":1,"time":1000,"file":"main.go","line":3,"args":[{"name":"x","type":"int","value":"2"}]}}` + "\n"
	mark := `{"watermark":{"v":1,"host":"h","time":5000,"lag":"150ms"}}` + "\n"
	f.Add([]byte(header + hit + mark + hit))
	if res, err := scenario.Replay(s, strings.NewReader(header+hit+mark+hit), "seed.jsonl"); err != nil || res.Hits != 2 || !res.OK() {
		f.Fatalf("the seed recording: %v, %+v", err, res)
	}
	f.Add([]byte(header + hit))
	f.Add([]byte(`{"riptraceRecording":1,"hits":0}` + "\n" + mark))
	f.Add([]byte("{}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := scenario.Replay(s, bytes.NewReader(data), "f.jsonl")
		if err != nil {
			return
		}
		if want := strings.Count(string(data), `"hit":{`); res.Hits > want {
			t.Fatalf("%d hits evaluated from a recording holding at most %d", res.Hits, want)
		}
	})
}
