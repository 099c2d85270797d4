package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/internal/testsupport"
)

// cluster is three embedded servers, as `riptrace server --cluster` runs
// them, on real ports of this machine.
type cluster struct {
	servers []*fleet.Server
	urls    []string // client URLs, by server
}

// freePorts returns n ports free now on 127.0.0.1.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	ports := freePorts(t, 6)
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3+i]))
	}
	c := &cluster{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 3 {
		s, err := fleet.StartServer(ctx, fleet.ServerConfig{
			Name:    fmt.Sprintf("n%d", i+1),
			Listen:  fmt.Sprintf("127.0.0.1:%d", ports[i]),
			DataDir: t.TempDir(),
			Cluster: fleet.ClusterConfig{Name: "riptrace-test", Listen: fmt.Sprintf("127.0.0.1:%d", ports[3+i]), Routes: routes},
		})
		if err != nil {
			t.Fatalf("starting server %d: %v", i+1, err)
		}
		t.Cleanup(s.Shutdown)
		c.servers = append(c.servers, s)
		c.urls = append(c.urls, s.ClientURL())
	}
	for i, s := range c.servers {
		select {
		case <-s.Ready():
		case <-time.After(60 * time.Second):
			t.Fatalf("server %d did not set up the stream and buckets within 60s", i+1)
		}
	}
	return c
}

// url is every server's URL, as clients and agents take them.
func (c *cluster) url() string { return strings.Join(c.urls, ",") }

// TestClusterFailover: three servers form a cluster and keep the hit
// stream and buckets at three replicas; while simulated agents publish,
// the server leading the stream is killed. No hit is lost or stored twice
// (message ids), the reader and the agents reconnect by themselves, and
// the reader reads each agent's hits in the order they were published.
func TestClusterFailover(t *testing.T) {
	cl := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	connect := func(name string) *fleet.Client {
		t.Helper()
		c, err := fleet.Connect(ctx, cl.url(), fleet.ClientOptions{Name: name, NATS: []nats.Option{nats.ReconnectWait(50 * time.Millisecond)}})
		if err != nil {
			t.Fatalf("connecting %s to %s: %v", name, cl.url(), err)
		}
		t.Cleanup(c.Close)
		return c
	}
	reader := connect("reader")
	info, err := reader.JetStream().Stream(ctx, reader.Subjects().HitStream())
	if err != nil {
		t.Fatal(err)
	}
	if r := info.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("the hit stream has %d replicas, want 3 in a cluster of three", r)
	}
	for _, b := range []string{reader.Subjects().TracepointBucket(), reader.Subjects().StatusBucket(), reader.Subjects().HostBucket()} {
		st, err := reader.JetStream().Stream(ctx, "KV_"+b)
		if err != nil {
			t.Fatal(err)
		}
		if r := st.CachedInfo().Config.Replicas; r != 3 {
			t.Fatalf("bucket %s has %d replicas, want 3", b, r)
		}
	}

	hits, err := reader.Hits(ctx, fleet.HitOptions{Tracepoints: []string{"tp"}})
	if err != nil {
		t.Fatal(err)
	}
	defer hits.Close()

	// Simulated agents, each on its own connection to the cluster,
	// publish through the agents' publisher with message ids, and send a
	// hit again until the stream acknowledges it, as the agent does.
	const agents, perAgent = 8, 300
	var published atomic.Int64
	var resent atomic.Int64
	var wg sync.WaitGroup
	for a := range agents {
		host := fmt.Sprintf("sim-%d", a)
		c := connect(host)
		pub, err := c.NewHitPublisher(host, 2*time.Second, 64)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for i := range perAgent {
				h := fleet.Hit{Tracepoint: "tp", Host: host, Pid: i}
				msg := pub.Msg("tp", fleet.Encode(&h), host+"-"+strconv.Itoa(i))
				for try := 0; ; try++ {
					if ctx.Err() != nil {
						return
					}
					f, err := pub.Publish(msg)
					if err == nil {
						select {
						case <-f.Ok():
						case err = <-f.Err():
						}
					}
					if err == nil {
						break
					}
					resent.Add(1)
					time.Sleep(20 * time.Millisecond) // backoff before sending the same hit again
				}
				published.Add(1)
			}
		})
	}

	// Kill the stream's leader once a third of the hits are in.
	testsupport.CheckFor(t, 60*time.Second, 10*time.Millisecond, func() error {
		if n := published.Load(); n < agents*perAgent/3 {
			return fmt.Errorf("%d hits published", n)
		}
		return nil
	})
	info, err = reader.JetStream().Stream(ctx, reader.Subjects().HitStream())
	if err != nil {
		t.Fatal(err)
	}
	leader := info.CachedInfo().Cluster.Leader
	killed := -1
	for i, s := range cl.servers {
		if s.Name() == leader {
			killed = i
		}
	}
	if killed < 0 {
		t.Fatalf("no server named %q leads the stream", leader)
	}
	cl.servers[killed].Shutdown()
	t.Logf("killed %s, the stream's leader, after %d hits", leader, published.Load())

	seen := make(map[string]int) // next expected hit per host
	for n := 0; n < agents*perAgent; n++ {
		h, err := hits.Next(ctx)
		if err != nil {
			t.Fatalf("reading hit %d of %d: %v", n, agents*perAgent, err)
		}
		if want := seen[h.Host]; h.Pid != want {
			t.Fatalf("host %s: hit %d after hit %d: lost, stored twice or out of order", h.Host, h.Pid, want-1)
		}
		seen[h.Host]++
	}
	wg.Wait()
	// Nothing more: no hit stored twice after the last.
	rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer rcancel()
	if h, err := hits.Next(rctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("after every hit, read %+v, %v", h, err)
	}
	st, err := reader.JetStream().Stream(ctx, reader.Subjects().HitStream())
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != agents*perAgent {
		t.Fatalf("the stream holds %d messages, want %d", n, agents*perAgent)
	}
	t.Logf("%d hits through the failover, %d sends repeated, 0 lost, 0 twice", agents*perAgent, resent.Load())
}

// TestOutboxDuplicateInProcess: against a hit stream of three replicas, a
// copy of a hit that reaches the stream while its first copy still waits
// for its raft round is refused with 409 "duplicate message id is in
// process". The Outbox counts it, cuts its window, and sends the hit again
// only once the first copy's fate is known (silentFor later): the stream
// then says it has it, and the hit is stored once and counted stored once.
// The first copy is published on the Outbox's own connection just ahead
// of it, as an earlier send whose ack was lost would have been; when the
// stream applies it before the copy arrives, the copy is an ordinary
// duplicate, and the test tries again with another hit.
func TestOutboxDuplicateInProcess(t *testing.T) {
	cl := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := fleet.Connect(ctx, cl.url(), fleet.ClientOptions{Name: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	const tries = 20
	for try := 1; try <= tries; try++ {
		host := fmt.Sprintf("h%d", try)
		out, err := fleet.NewOutbox(c, fleet.OutboxConfig[int]{Host: host, IDBase: host + "-"})
		if err != nil {
			t.Fatal(err)
		}
		h := fleet.Hit{Tracepoint: "tp", Host: host}
		data := fleet.Encode(&h)
		first := nats.NewMsg(c.Subjects().Trace(host, "tp"))
		first.Data = data
		first.Header.Set(jetstream.MsgIDHeader, host+"-1") // the Outbox's id of its first hit
		if err := c.Conn().PublishMsg(first); err != nil {
			t.Fatal(err)
		}
		out.Offer("tp", data, 1)
		st := runOutbox(t, ctx, out)
		if st.InProcess == 0 {
			if st.Stored != 1 || st.Repeated != 1 {
				t.Fatalf("stats %+v: want the hit stored, as a copy of the first", st)
			}
			continue
		}
		t.Logf("try %d: %+v", try, st)
		// Sent twice: the copy refused as in process, then once more,
		// which the stream acknowledged as the first copy's duplicate.
		if st.InProcess != 1 || st.Sent != 2 || st.Resent != 1 || st.Stored != 1 || st.Repeated != 1 || st.Lost != 0 {
			t.Fatalf("stats %+v: want 2 sends, one refused as in process, the hit stored once", st)
		}
		// An AckWindow starts at 8 hits.
		if st.Window >= 8 {
			t.Errorf("the window is %d after a 409, want it cut below the first 8", st.Window)
		}
		counts, err := c.StoredHits(ctx, "tp")
		if err != nil {
			t.Fatal(err)
		}
		if counts[host] != 1 {
			t.Fatalf("the stream holds %d hits of %s, want 1", counts[host], host)
		}
		return
	}
	t.Fatalf("in %d tries, the stream never refused a copy as in process", tries)
}
