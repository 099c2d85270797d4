// Command otel is a target for trace-context tests: two services in one
// program that pass an OpenTelemetry (W3C) trace context from one to the
// other, as instrumented services do.
//
// With -serve it answers POST /work: it extracts the caller's trace
// context from the traceparent header into the request's context, as
// OpenTelemetry's HTTP instrumentation does, and calls work with it. It
// prints "READY pid=<pid> addr=<host:port>".
//
// With -call URL it sends a request to URL every -every: each starts a new
// trace with a span of its own, put in the context with the OpenTelemetry
// API, and call sends it with the trace context injected into the headers.
// It prints "READY pid=<pid>".
//
// A test traces call (the caller, before the request leaves), work and
// finish (the callee, 2 ms apart) and returned (the caller, once the
// answer came): all hold a context.Context whose span context says the
// same trace id, and the callee's names the caller's span as its remote
// parent.
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

var prop = propagation.TraceContext{}

// call sends request n with ctx's trace context.
//
//go:noinline
func call(ctx context.Context, client *http.Client, url string, n int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/work?n="+strconv.Itoa(n), nil)
	if err != nil {
		return err
	}
	prop.Inject(ctx, propagation.HeaderCarrier(req.Header))
	resp, err := client.Do(req) //@trace(call)
	if err != nil {
		return err
	}
	return resp.Body.Close() //@trace(returned)
}

// work is the callee's handling of request n.
//
//go:noinline
func work(ctx context.Context, n int) int {
	done := n * 2 //@trace(work)
	return done
}

// finish is the end of the callee's handling, 2 ms after work.
//
//go:noinline
func finish(ctx context.Context, done int) int {
	return done + 1 //@trace(finish)
}

type requestKey struct{}

func serve() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	http.HandleFunc("POST /work", func(w http.ResponseWriter, r *http.Request) {
		ctx := prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		// Layers over the span, as handlers add them: the span is found
		// below a deadline and a value.
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ctx = context.WithValue(ctx, requestKey{}, n)
		done := work(ctx, n)
		time.Sleep(2 * time.Millisecond) // the rest of the handler's work
		fmt.Fprintln(w, finish(ctx, done))
	})
	fmt.Printf("READY pid=%d addr=%s\n", os.Getpid(), ln.Addr())
	log.Fatal(http.Serve(ln, nil))
}

func newSpan() context.Context {
	var tid trace.TraceID
	var sid trace.SpanID
	rand.Read(tid[:])
	rand.Read(sid[:])
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
	return trace.ContextWithSpanContext(context.Background(), sc)
}

func main() {
	server := flag.Bool("serve", false, "answer POST /work")
	url := flag.String("call", "", "send requests to `URL`")
	every := flag.Duration("every", 20*time.Millisecond, "time between requests")
	wait := flag.Duration("wait", 0, "time before the first request")
	flag.Parse()
	if *server {
		serve()
		return
	}
	client := &http.Client{Timeout: 5 * time.Second}
	fmt.Printf("READY pid=%d\n", os.Getpid())
	time.Sleep(*wait)
	for n := 0; ; n++ {
		if err := call(newSpan(), client, *url, n); err != nil {
			log.Print(err)
		}
		time.Sleep(*every)
	}
}
