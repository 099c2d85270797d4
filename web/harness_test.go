package web_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/agent/agenttest"
	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/fleet/fleettest"
	"github.com/riptrace/riptrace/internal/testsupport"
	"github.com/riptrace/riptrace/source/sourcetest"
	"github.com/riptrace/riptrace/web"
)

func TestMain(m *testing.M) { agenttest.Main(m, checkNoLeak) }

// checkNoLeak fails the run if a goroutine of the web server outlives
// every test.
func checkNoLeak() error {
	return testsupport.NoGoroutines(10*time.Second, "goroutines of the web page",
		"riptrace/riptrace/web.(*hub)", "riptrace/riptrace/web.(*Server)")
}

const module = "example.com/revs"

var seq atomic.Int64

// unique names a thing of this test process: executables above all, which
// agents select by name, and another test process (a second run of the
// suite on the machine) numbers its own from 1 too.
func unique(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), seq.Add(1))
}

// page is a web server on a real NATS server, and a client of its API.
type page struct {
	t     testing.TB
	srv   *server.Server
	c     *fleet.Client
	ws    *web.Server
	hs    *httptest.Server
	token string
	sess  string
	// user and password, when set, replace the token: the page signed in
	// as one of Options.Users.
	user, password string
}

// newPage starts a NATS server and a web server on it whose sources map
// module to url.
func newPage(t testing.TB, url string, mod func(*web.Options)) *page {
	t.Helper()
	s := fleettest.RunServer(t)
	c := fleettest.Connect(t, s)
	// The server's clock, as riptrace server answers it: hits are then
	// placed by when they ran.
	if _, err := fleettest.Connect(t, s).ServeClock(); err != nil {
		t.Fatal(err)
	}
	opts := web.Options{
		Token:            web.NewToken(),
		Sources:          web.NewSources(t.TempDir(), map[string]string{module: url}, nil),
		FleetEvery:       200 * time.Millisecond,
		TracepointsEvery: 100 * time.Millisecond,
		Grace:            time.Second,
		LeaseTTL:         30 * time.Second,
	}
	if mod != nil {
		mod(&opts)
	}
	ws, err := web.New(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { ws.Run(ctx); close(ran) }()
	hs := httptest.NewServer(ws)
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
		cancel()
		<-ran
	})
	return &page{t: t, srv: s, c: c, ws: ws, hs: hs, token: opts.Token, sess: fmt.Sprintf("session-%d-%016d", os.Getpid(), seq.Add(1))}
}

// do sends a request with the page's token and session and returns the
// status and body.
func (p *page) do(method, path string, body any) (int, []byte) {
	p.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			p.t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.hs.URL+path, r)
	if err != nil {
		p.t.Fatal(err)
	}
	p.authorize(req)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// authorize sets req's credential and session: the user's name and
// password if the page signed in, else the token.
func (p *page) authorize(req *http.Request) {
	if p.user != "" {
		req.SetBasicAuth(p.user, p.password)
	} else {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	req.Header.Set("X-RipTrace-Session", p.sess)
}

// get decodes a 200 answer to GET path into v.
func (p *page) get(path string, v any) error {
	status, b := p.do("GET", path, nil)
	if status != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, status, b)
	}
	if s, ok := v.(*string); ok {
		*s = string(b)
		return nil
	}
	return json.Unmarshal(b, v)
}

// event is one server-sent event.
type event struct {
	name string
	data []byte
}

// stream is an open GET /api/events.
type stream struct {
	events chan event
	cancel func()
	done   chan struct{}
}

// events opens the page's event stream.
func (p *page) events() *stream {
	p.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", p.hs.URL+"/api/events", nil)
	p.authorize(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		p.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		p.t.Fatalf("GET /api/events: %d", resp.StatusCode)
	}
	st := &stream{events: make(chan event, 10000), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(st.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 16<<20)
		var ev event
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				ev.data = []byte(line[len("data: "):])
			case line == "" && ev.name != "":
				select {
				case st.events <- ev:
				default: // the test reads what it needs
				}
				ev = event{}
			}
		}
	}()
	p.t.Cleanup(st.close)
	return st
}

func (st *stream) close() {
	st.cancel()
	<-st.done
}

// await reads events until one named name satisfies ok.
func (st *stream) await(t testing.TB, name string, within time.Duration, ok func([]byte) bool) []byte {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case ev := <-st.events:
			if ev.name == name && ok(ev.data) {
				return ev.data
			}
		case <-st.done:
			t.Fatalf("the event stream ended before a %s event came", name)
		case <-deadline:
			t.Fatalf("no matching %s event within %v", name, within)
		}
	}
}

// repoEnv is a git repository served as a bare remote over file://, with
// targets built at two of its commits.
type repoEnv struct {
	url        string
	revA, revC string
	binA, binC string
}

// twoRevisions makes a repository whose commit A is built into binA, B
// moves the marked line down, and C changes the marked line, built into
// binC; the remote is a bare clone.
func twoRevisions(t *testing.T) *repoEnv {
	t.Helper()
	repo, binA, revA := sourcetest.MovedLine(t, agenttest.BuildStamped)
	main := filepath.Join(repo, "main.go")
	b, err := os.ReadFile(main)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(b), "m += n //@trace(work)", "m += 2 * n //@trace(work)", 1)
	revC := sourcetest.Commit(t, repo, "C", map[string]string{"main.go": changed})
	binC := filepath.Join(t.TempDir(), "revs-c")
	if err := agenttest.BuildStamped(repo, binC); err != nil {
		t.Fatal(err)
	}
	bare := filepath.Join(t.TempDir(), "revs.git")
	sourcetest.Git(t, repo, "clone", "-q", "--bare", repo, bare)
	return &repoEnv{url: "file://" + bare, revA: revA, revC: revC, binA: binA, binC: binC}
}

// startAgent runs an agent on the page's NATS server that manages the
// processes named exes.
func (p *page) startAgent(host string, exes ...string) {
	agenttest.RunAgent(p.t, p.srv, agent.Config{Host: host, Processes: exes}, nil)
}

// markerIn returns the line of text holding @trace(name).
func markerIn(t testing.TB, text, name string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, "@trace("+name+")") {
			return i + 1
		}
	}
	t.Fatalf("no line has @trace(%s)", name)
	return 0
}
