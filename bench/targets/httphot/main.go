// Command httphot is the target of bench/limits: an HTTP service whose one
// handler runs a hot loop. GET /work?n=N calls step N times and answers with
// the result; the benchmark traces the marked line of step and compares the
// requests per second the service serves with and without the tracepoint.
//
// It listens on 127.0.0.1 on a free port and prints "READY pid=<pid>
// addr=<host:port>".
package main

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
)

// step is a little arithmetic with an argument and a local to capture; it is
// never inlined so its argument stays an argument in the optimized build.
//
//go:noinline
func step(i int, acc uint64) uint64 {
	x := acc*31 + uint64(i) //@trace(hot)
	return x ^ x>>7
}

func work(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.URL.Query().Get("n"))
	if err != nil || n < 0 || n > 1_000_000 {
		http.Error(w, "want ?n=N with 0 <= N <= 1000000", http.StatusBadRequest)
		return
	}
	acc := uint64(1)
	for i := range n {
		acc = step(i, acc)
	}
	fmt.Fprintln(w, acc)
}

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	http.HandleFunc("/work", work)
	fmt.Printf("READY pid=%d addr=%s\n", os.Getpid(), ln.Addr())
	log.Fatal(http.Serve(ln, nil))
}
