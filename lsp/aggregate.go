package lsp

import (
	"sort"
	"sync"
	"time"

	"github.com/riptrace/riptrace/fleet"
)

// DefaultMaxRecent is how many recent hits a line keeps for hovers.
const DefaultMaxRecent = 20

// Aggregate holds what the hit stream said about each local line: counts,
// hosts, processes, last values and a bounded list of recent hits. Lines are
// the ones the processes run (lines of the file on disk, 1-based); documents
// map them to the lines of the edited buffer. It is safe for concurrent use.
// Memory is bounded by the number of traced lines, not by the number of hits.
type Aggregate struct {
	maxRecent int

	// mu guards files, hits and lastSeq.
	mu      sync.Mutex
	files   map[string]map[int]*lineStats // local path → line → stats
	hits    uint64
	lastSeq uint64
}

type lineStats struct {
	count   uint64
	dropped uint64
	hosts   map[string]uint64
	procs   map[procKey]struct{}
	last    time.Time
	values  []fleet.Variable // of the last hit: args, then locals, then expressions
	recent  []fleet.Placed   // ring of the last maxRecent hits in timeline order, without stacks
	next    int              // where the next hit goes in recent once it is full
}

type procKey struct {
	host string
	pid  int
}

// NewAggregate returns an empty aggregate keeping maxRecent hits per line
// (DefaultMaxRecent if ≤ 0).
func NewAggregate(maxRecent int) *Aggregate {
	if maxRecent <= 0 {
		maxRecent = DefaultMaxRecent
	}
	return &Aggregate{maxRecent: maxRecent, files: make(map[string]map[int]*lineStats)}
}

// Add records hit under the local file it maps to. Hits come in the order
// of the timeline (fleet.Timeline), the one every client shows.
func (a *Aggregate) Add(file string, p fleet.Placed) {
	p.Stack = nil // hovers show no stacks; keeping them would multiply memory
	h := &p.Hit
	a.mu.Lock()
	defer a.mu.Unlock()
	lines := a.files[file]
	if lines == nil {
		lines = make(map[int]*lineStats)
		a.files[file] = lines
	}
	s := lines[h.Line]
	if s == nil {
		s = &lineStats{hosts: make(map[string]uint64), procs: make(map[procKey]struct{})}
		lines[h.Line] = s
	}
	s.count++
	s.dropped += h.Dropped
	s.hosts[h.Host]++
	s.procs[procKey{h.Host, h.Pid}] = struct{}{}
	if h.ServerTime.After(s.last) {
		s.last = h.ServerTime
	}
	s.values = s.values[:0]
	s.values = append(append(append(s.values, h.Args...), h.Locals...), h.Exprs...)
	if len(s.recent) < a.maxRecent {
		s.recent = append(s.recent, p)
	} else {
		s.recent[s.next] = p
		s.next = (s.next + 1) % a.maxRecent
	}
	a.hits++
	if h.Seq > a.lastSeq {
		a.lastSeq = h.Seq
	}
}

// Hits returns how many hits were added in all, and the last stream
// sequence among them.
func (a *Aggregate) Hits() (n, lastSeq uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hits, a.lastSeq
}

// Clear forgets the hits of file, or of every file if file is "".
func (a *Aggregate) Clear(file string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if file == "" {
		a.files = make(map[string]map[int]*lineStats)
		return
	}
	delete(a.files, file)
}

// Files lists the files that have hits, sorted.
func (a *Aggregate) Files() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	files := make([]string, 0, len(a.files))
	for f := range a.files {
		files = append(files, f)
	}
	sort.Strings(files)
	return files
}

// LineHits is a snapshot of one line's hits.
type LineHits struct {
	Line      int // 1-based, in the file the processes run
	Count     uint64
	Dropped   uint64 // hits the agents' rate limits left out
	Hosts     []HostCount
	Processes int
	Last      time.Time        // server time of the last hit
	Values    []fleet.Variable // of the last hit
	Recent    []fleet.Placed   // latest in the timeline first
}

// HostCount is how many hits came from one host.
type HostCount struct {
	Host  string
	Count uint64
}

// Rate is the hits per second over the recent hits, by when they ran, or
// 0 when there are fewer than two.
func (l *LineHits) Rate() float64 {
	if len(l.Recent) < 2 {
		return 0
	}
	span := l.Recent[0].CoordinatedTime.Sub(l.Recent[len(l.Recent)-1].CoordinatedTime)
	if span <= 0 {
		return 0
	}
	return float64(len(l.Recent)-1) / span.Seconds()
}

// File returns a snapshot of file's lines with hits, sorted by line.
func (a *Aggregate) File(file string) []LineHits {
	a.mu.Lock()
	defer a.mu.Unlock()
	lines := a.files[file]
	out := make([]LineHits, 0, len(lines))
	for line, s := range lines {
		lh := LineHits{
			Line:      line,
			Count:     s.count,
			Dropped:   s.dropped,
			Processes: len(s.procs),
			Last:      s.last,
			Values:    append([]fleet.Variable(nil), s.values...),
			Recent:    make([]fleet.Placed, 0, len(s.recent)),
		}
		for h, n := range s.hosts {
			lh.Hosts = append(lh.Hosts, HostCount{h, n})
		}
		sort.Slice(lh.Hosts, func(i, j int) bool { return lh.Hosts[i].Host < lh.Hosts[j].Host })
		// Latest first: walk the ring backwards from the last write.
		for i := range s.recent {
			k := (s.next - 1 - i + 2*len(s.recent)) % len(s.recent)
			if len(s.recent) < a.maxRecent {
				k = len(s.recent) - 1 - i
			}
			lh.Recent = append(lh.Recent, s.recent[k])
		}
		out = append(out, lh)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}
