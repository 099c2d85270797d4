package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"
)

// HostWatch follows the host bucket: which agents are alive, from the
// heartbeats the server pushes to it, with no agent asked and nothing
// polled. Profiles asks profile.get only of the hosts a caller selects, and
// of those only the ones whose processes changed since it last asked (the
// heartbeat's Digest): a client of a thousand agents that traces three asks
// three. It follows the bucket through reconnects, as SpecWatch does.
//
// Its one goroutine, run, applies the bucket's changes and wakes every
// Subscribe channel when a host comes, goes, changes its processes or
// falls silent. One watch serves every reader in a client (a debug
// session's threads and its revision following share its profiles).
type HostWatch struct {
	c      *Client
	sw     *SpecWatch
	synced chan struct{} // closed once the bucket's first values are in
	done   chan struct{}

	// mu guards hosts and subs.
	mu    sync.Mutex
	hosts map[string]*watchedHost
	subs  []chan struct{} // cap 1 each: changes coalesce
}

// watchedHost is one key of the host bucket and what was learnt of it.
type watchedHost struct {
	entry  HostEntry // without Profile; Gone is worked out when listed
	every  time.Duration
	digest string
	// shownGone is whether it was gone when subscribers were last told.
	shownGone bool
	// profiles are what was learnt of the host's processes: without
	// their files, and with them (kinds profileBare and profileFiles).
	profiles [2]profileCache
}

// The kinds of profile a HostWatch keeps: Profile's, and ProfileFiles's.
const (
	profileBare = iota
	profileFiles
)

// profileCache is one kind of profile of a host.
type profileCache struct {
	// profile is the last one asked for, when the host's digest was
	// digest.
	profile *Profile
	digest  string
	// asking is the profile.get in flight, which callers meanwhile share.
	asking *profileAsk
}

// profileAsk is one profile.get of a host in flight.
type profileAsk struct {
	digest  string
	done    chan struct{} // closed once profile or err is set
	profile *Profile
	err     error
}

// staleAfter is how many heartbeat periods may pass before a host is
// taken as gone.
const staleAfter = 3

// WatchHosts starts watching the host bucket until ctx ends or Stop is
// called. log receives the rewatches.
func (c *Client) WatchHosts(ctx context.Context, log *slog.Logger) (*HostWatch, error) {
	gctx, release := c.perms.guardLive(ctx, c.perms.jsPatterns()...)
	sw, err := c.watchBucket(gctx, c.hosts, "host bucket", log)
	release()
	if err != nil {
		return nil, denied(gctx, err)
	}
	hw := &HostWatch{
		c: c, sw: sw,
		synced: make(chan struct{}),
		done:   make(chan struct{}),
		hosts:  make(map[string]*watchedHost),
	}
	go hw.run()
	return hw, nil
}

// Subscribe returns a channel of its own that receives after the hosts
// listed changed: one came, went, changed its processes or fell silent.
// Changes coalesce; call it once per reader.
func (hw *HostWatch) Subscribe() <-chan struct{} {
	ch := make(chan struct{}, 1)
	hw.mu.Lock()
	hw.subs = append(hw.subs, ch)
	hw.mu.Unlock()
	return ch
}

// Synced is closed once the hosts present when the watch began are known.
func (hw *HostWatch) Synced() <-chan struct{} { return hw.synced }

// Stop stops watching and waits for the watch's goroutine.
func (hw *HostWatch) Stop() {
	hw.sw.Stop()
	<-hw.done
}

func (hw *HostWatch) run() {
	defer close(hw.done)
	stale := time.NewTimer(time.Hour)
	defer stale.Stop()
	first := true
	for {
		var changed, sooner, fired bool
		select {
		case ev, ok := <-hw.sw.Events():
			if !ok {
				return
			}
			changed, sooner = hw.apply(ev, time.Now())
			if first {
				close(hw.synced)
				first, changed = false, true
			}
		case <-stale.C:
			changed, fired = hw.silenced(time.Now()), true
		}
		// A heartbeat that changes nothing mostly moves its host's deadline
		// later: the timer may then fire early, and finds nothing. Not
		// waking the subscribers and not walking every host for it keeps a
		// thousand agents' heartbeats from costing every reader a walk of
		// the thousand, twice a second each.
		if changed {
			hw.notify()
		}
		if changed || sooner || fired {
			stale.Reset(hw.nextStale())
		}
	}
}

func (hw *HostWatch) notify() {
	hw.mu.Lock()
	defer hw.mu.Unlock()
	for _, ch := range hw.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// apply takes one event of the bucket into hosts, and says whether it
// changed what subscribers are told of: a host came, went, changed its
// processes or what is wrong with it, or spoke again after falling
// silent. A heartbeat that only says the host is still there changes
// nothing. sooner says a host may now fall silent sooner than it would
// have (its period shrank).
func (hw *HostWatch) apply(ev SpecEvent, now time.Time) (changed, sooner bool) {
	hw.mu.Lock()
	defer hw.mu.Unlock()
	if ev.Resync {
		changed = true
		seen := make(map[string]bool, len(ev.Entries))
		for _, e := range ev.Entries {
			seen[e.Key] = !e.Deleted
		}
		for name := range hw.hosts {
			if !seen[name] {
				delete(hw.hosts, name)
			}
		}
	}
	for _, e := range ev.Entries {
		if e.Deleted {
			// The agent withdrew its heartbeat: it stopped.
			if hw.hosts[e.Key] != nil {
				delete(hw.hosts, e.Key)
				changed = true
			}
			continue
		}
		h := hw.hosts[e.Key]
		if h == nil {
			h = &watchedHost{}
			hw.hosts[e.Key] = h
			changed = true
		}
		entry, every, digest := hostEntry(e.Key, e.Value)
		if digest != h.digest || entry.Error != h.entry.Error || entry.Gone != h.entry.Gone {
			changed = true
		}
		if entry.LastSeen.Add(staleAfter * every).Before(h.entry.LastSeen.Add(staleAfter * h.every)) {
			sooner = true
		}
		h.entry, h.every, h.digest = entry, every, digest
		if g := h.gone(now); g != h.shownGone {
			h.shownGone, changed = g, true
		}
	}
	return changed, sooner
}

// silenced marks the hosts whose heartbeats grew too old by now, and says
// whether there were any.
func (hw *HostWatch) silenced(now time.Time) (changed bool) {
	hw.mu.Lock()
	defer hw.mu.Unlock()
	for _, h := range hw.hosts {
		if g := h.gone(now); g != h.shownGone {
			h.shownGone, changed = g, true
		}
	}
	return changed
}

// hostEntry reads one heartbeat, kept under key.
func hostEntry(key string, value []byte) (HostEntry, time.Duration, string) {
	var hb Heartbeat
	if err := Decode(value, "heartbeat", &hb); err != nil {
		return HostEntry{Name: key, Gone: true, Error: err.Error()}, 0, ""
	}
	// The key is the host: only its agent may write it. The body says
	// whatever its writer put there.
	entry := HostEntry{Name: key, LastSeen: hb.Updated}
	if hb.Host != key {
		entry.Error = hostMismatch(key, hb.Host)
	}
	return entry, time.Duration(hb.Every), hb.Digest
}

func hostMismatch(key, host string) string {
	return fmt.Sprintf("the heartbeat under key %s names host %q: it is listed under its key, which only host %s's agent may write. Check that agent's --host, or who holds its credentials", key, host, key)
}

// gone tells a host whose heartbeat is too old. Lock should be held.
func (h *watchedHost) gone(now time.Time) bool {
	return h.entry.Gone || now.Sub(h.entry.LastSeen) > staleAfter*h.every
}

// nextStale is how long until the next live host falls silent.
func (hw *HostWatch) nextStale() time.Duration {
	hw.mu.Lock()
	defer hw.mu.Unlock()
	now := time.Now()
	next := time.Hour
	for _, h := range hw.hosts {
		if h.gone(now) {
			continue
		}
		// A moment past the deadline, so that the host is gone then.
		next = min(next, h.entry.LastSeen.Add(staleAfter*h.every).Sub(now)+time.Millisecond)
	}
	return max(next, time.Millisecond)
}

// List returns every host in the bucket, sorted by name, without
// profiles; a host whose heartbeat is older than three periods is Gone.
// It asks no agent.
func (hw *HostWatch) List() []HostEntry {
	hw.mu.Lock()
	defer hw.mu.Unlock()
	now := time.Now()
	out := make([]HostEntry, 0, len(hw.hosts))
	for _, h := range hw.hosts {
		e := h.entry
		e.Gone = h.gone(now)
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// profileConcurrency bounds the profile requests in flight at once: a
// hundred hosts cost one round trip, ten thousand do not flood the
// connection.
const profileConcurrency = 128

// Profiles returns the live hosts that match selects (all if nil), sorted
// by name, each with its profile. It waits for the bucket's first values,
// then asks profile.get of a host only if its processes changed since the
// last answer (or its agent does not say: no Digest); the others are
// answered from that last answer. A host that does not answer within 5 s
// is marked Gone, with why.
func (hw *HostWatch) Profiles(ctx context.Context, match func(host string) bool) ([]HostEntry, error) {
	return hw.profiles(ctx, match, profileBare)
}

// ProfilesFiles is Profiles with, for each process, the source files its
// DWARF names (Client.ProfileFiles): which processes run a file, asked of
// every matching host at once, and kept per host until its processes
// change as profiles are.
func (hw *HostWatch) ProfilesFiles(ctx context.Context, match func(host string) bool) ([]HostEntry, error) {
	return hw.profiles(ctx, match, profileFiles)
}

// profiles is Profiles of the given kind.
func (hw *HostWatch) profiles(ctx context.Context, match func(host string) bool, kind int) ([]HostEntry, error) {
	select {
	case <-hw.synced:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the host bucket: %w", ctx.Err())
	}
	type ask struct {
		i     int
		pa    *profileAsk
		owner bool // this call sends the request; the others wait for it
	}
	var (
		entries []HostEntry
		asks    []ask
	)
	hw.mu.Lock()
	now := time.Now()
	for name, h := range hw.hosts {
		if h.gone(now) || match != nil && !match(name) {
			continue
		}
		e := h.entry
		pc := &h.profiles[kind]
		switch {
		case pc.profile != nil && h.digest != "" && h.digest == pc.digest:
			e.Profile = pc.profile
		case pc.asking != nil && pc.asking.digest == h.digest:
			// Asked already, by another caller, since the processes last
			// changed: one request serves both.
			asks = append(asks, ask{len(entries), pc.asking, false})
		default:
			pc.asking = &profileAsk{digest: h.digest, done: make(chan struct{})}
			asks = append(asks, ask{len(entries), pc.asking, true})
		}
		entries = append(entries, e)
	}
	hw.mu.Unlock()
	var wg sync.WaitGroup
	sem := make(chan struct{}, profileConcurrency)
	for _, a := range asks {
		if a.owner {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				hw.ask(ctx, entries[a.i].Name, a.pa, kind)
			})
		}
	}
	for _, a := range asks {
		e := &entries[a.i]
		select {
		case <-a.pa.done:
		case <-ctx.Done():
			e.Gone = true
			e.Error = strings.TrimPrefix(e.Error+"; waiting for the profile: "+ctx.Err().Error(), "; ")
			continue
		}
		if a.pa.err != nil {
			e.Gone = true
			e.Error = strings.TrimPrefix(e.Error+"; "+a.pa.err.Error(), "; ")
			continue
		}
		e.Profile = a.pa.profile
	}
	wg.Wait()
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	return entries, nil
}

// ask sends profile.get to host for pa, and keeps the answer for the
// digest pa was asked at. The request outlives its first caller's ctx:
// others may be waiting for it.
func (hw *HostWatch) ask(ctx context.Context, host string, pa *profileAsk, kind int) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	get := hw.c.Profile
	if kind == profileFiles {
		get = hw.c.ProfileFiles
	}
	p, err := get(actx, host)
	hw.mu.Lock()
	pa.profile, pa.err = p, err
	if h := hw.hosts[host]; h != nil {
		pc := &h.profiles[kind]
		if err == nil {
			pc.profile, pc.digest = p, pa.digest
		}
		if pc.asking == pa {
			pc.asking = nil
		}
	}
	hw.mu.Unlock()
	close(pa.done)
}

// Fingerprint asks host as Client.Fingerprint does; nothing is cached.
func (hw *HostWatch) Fingerprint(ctx context.Context, host string, file Location) (*Profile, error) {
	return hw.c.Fingerprint(ctx, host, file)
}

// Hosts is Profiles of every host: a HostWatch answers source.Resolve as
// a Client does, from its cache.
func (hw *HostWatch) Hosts(ctx context.Context) ([]HostEntry, error) {
	return hw.Profiles(ctx, nil)
}
