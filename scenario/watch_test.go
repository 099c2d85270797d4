package scenario

import (
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/internal/testsupport"
)

func startNATS(t *testing.T, port int) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// TestFleetWatchNATS restarts a real nats-server under a watched
// connection: an outage that ends within the grace is forgotten once the
// connection is back, and one that outlasts it loses the fleet, naming
// the server.
func TestFleetWatchNATS(t *testing.T) {
	srv := startNATS(t, -1)
	port := srv.Addr().(*net.TCPAddr).Port
	w := newFleetWatch()
	w.url = srv.ClientURL()
	nc, err := nats.Connect(w.url, append(w.options(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	go w.run(time.Minute, nil)

	srv.Shutdown()
	srv.WaitForShutdown()
	testsupport.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.down.IsZero() {
			return errors.New("the watch has not seen the connection go down")
		}
		return nil
	})
	startNATS(t, port)
	testsupport.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if !w.down.IsZero() || !nc.IsConnected() {
			return errors.New("the watch still counts the outage")
		}
		return nil
	})
	if err := w.err(); err != nil {
		t.Fatalf("an outage shorter than the grace lost the fleet: %v", err)
	}
	w.close()
	<-w.done

	// The same outage, with a grace it outlasts.
	srv = startNATS(t, -1)
	w2 := newFleetWatch()
	w2.url = srv.ClientURL()
	nc2, err := nats.Connect(w2.url, append(w2.options(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	go w2.run(200*time.Millisecond, nil)
	defer func() { w2.close(); <-w2.done }()
	srv.Shutdown()
	select {
	case <-w2.lost.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not give up on a server gone past its grace")
	}
	if err := w2.err(); err == nil || !strings.Contains(err.Error(), "lost the fleet: the NATS server at "+w2.url+" has not answered since") {
		t.Errorf("want the loss naming the server, got %v", err)
	}
}

// TestFleetWatchAgents: an agent gone from the host list, or marked gone
// there, loses the fleet, naming it and how it went.
func TestFleetWatchAgents(t *testing.T) {
	for _, c := range []struct {
		entry fleet.HostEntry
		want  string
	}{
		{fleet.HostEntry{Name: "killed", Gone: true, LastSeen: time.Now().Add(-20 * time.Second)}, "the agent on host killed has sent no heartbeat since"},
		{fleet.HostEntry{Name: "stopped"}, "the agent on host stopped has been gone since"},
	} {
		w := newFleetWatch()
		go w.run(time.Minute, func() ([]fleet.HostEntry, time.Time, error) {
			return []fleet.HostEntry{c.entry}, time.Time{}, nil
		})
		select {
		case <-w.lost.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the watch did not notice the agent gone", c.entry.Name)
		}
		if err := w.err(); err == nil || !strings.Contains(err.Error(), "lost the fleet: "+c.want) {
			t.Errorf("want the loss saying %q, got %v", c.want, err)
		}
		w.close()
		<-w.done
	}
}

// TestBehindWithoutWatermark: a host the run's tracepoints were installed
// on that has sent no watermark yet is waited for, like one whose last
// watermark is before the end of the steps.
func TestBehindWithoutWatermark(t *testing.T) {
	c := &collector{marks: map[string]int64{"ahead": 200, "before": 50}, changed: make(chan struct{})}
	late, _ := c.behind([]string{"ahead", "before", "silent"}, 100)
	if !slices.Equal(late, []string{"before", "silent"}) {
		t.Fatalf("behind = %v, want [before silent]", late)
	}
}
