// Command grpcsvc is the large target of bench/run.sh: a gRPC server with
// what production servers link in (xDS, admin, channelz, reflection,
// OpenTelemetry), so that attaching to it means loading a realistic amount
// of DWARF. Its health service's Check is hand-written, and the benchmark
// traces the marked line in it.
//
// It prints "READY pid=<pid> addr=<host:port>" once it serves. With -check
// or -probe it is a client of the server at ADDR instead: -check calls Check
// once, prints "SERVING" and exits; -probe calls Check every 5 ms until
// SIGTERM or SIGINT, printing "PROBING" after the first call (which also
// connects) and at the end "PROBE calls=<n> max_ns=<longest call after the
// first>": how long the server stood still meanwhile, while a debugger
// attached for example.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/admin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/stats/opentelemetry"
	"google.golang.org/grpc/status"
	_ "google.golang.org/grpc/xds" // the xDS resolver, balancers and CSDS admin service
)

// health answers Check for the services it knows.
type health struct {
	healthpb.UnimplementedHealthServer
	checks atomic.Int64
}

func (h *health) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	svc := strings.TrimSpace(req.GetService())
	n := h.checks.Add(1) //@trace(handle)
	if svc != "" && svc != "bench" {
		return nil, status.Errorf(codes.NotFound, "unknown service %q (check %d)", svc, n)
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "`HOST:PORT` to serve on")
	check := flag.String("check", "", "call Check on the server at `HOST:PORT` and exit")
	probe := flag.String("probe", "", "call Check on the server at `HOST:PORT` every 5 ms until SIGTERM; print the longest call")
	flag.Parse()
	switch {
	case *check != "":
		if err := callCheck(*check); err != nil {
			log.Fatal(err)
		}
		return
	case *probe != "":
		if err := probeLatency(*probe); err != nil {
			log.Fatal(err)
		}
		return
	}

	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("listening on %s: %v", *listen, err)
	}
	mp := metric.NewMeterProvider()
	srv := grpc.NewServer(opentelemetry.ServerOption(opentelemetry.Options{
		MetricsOptions: opentelemetry.MetricsOptions{MeterProvider: mp},
	}))
	healthpb.RegisterHealthServer(srv, &health{})
	reflection.Register(srv)
	cleanup, err := admin.Register(srv)
	if err != nil {
		log.Fatalf("registering the admin services: %v", err)
	}
	defer cleanup()

	fmt.Printf("READY pid=%d addr=%s\n", os.Getpid(), lis.Addr())
	if err := srv.Serve(lis); err != nil {
		log.Fatalf("serving: %v", err)
	}
}

func callCheck(addr string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dialing %s: %w", addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "bench"})
	if err != nil {
		return fmt.Errorf("calling Check on %s: %w", addr, err)
	}
	fmt.Println(resp.GetStatus())
	return nil
}

func probeLatency(addr string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dialing %s: %w", addr, err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	done, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// mu guards the fields below.
	var mu sync.Mutex
	var calls int
	var longest time.Duration
	var inFlight time.Time // start of the call under way, zero between calls
	failed := make(chan error, 1)
	go func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for range tick.C {
			start := time.Now()
			mu.Lock()
			inFlight = start
			mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			_, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "bench"})
			cancel()
			if err != nil {
				failed <- fmt.Errorf("calling Check on %s: %w", addr, err)
				return
			}
			mu.Lock()
			inFlight = time.Time{}
			if calls++; calls > 1 {
				longest = max(longest, time.Since(start))
			}
			mu.Unlock()
			if calls == 1 {
				fmt.Println("PROBING")
			}
		}
	}()
	select {
	case err := <-failed:
		return err
	case <-done.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	// A call still under way has lasted at least this long.
	if !inFlight.IsZero() && calls > 0 {
		longest = max(longest, time.Since(inFlight))
	}
	fmt.Printf("PROBE calls=%d max_ns=%d\n", calls, longest.Nanoseconds())
	return nil
}
