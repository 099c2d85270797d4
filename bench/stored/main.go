// Command stored is make bench's wait for the hit stream: it waits until
// the stream holds -want hits of tracepoint -tracepoint from host -host,
// or until their count has not moved for -still, and prints the count. It
// asks the NATS server, never the agent: bench/run.sh measures the agent's
// CPU while it waits, and a read of the agent's own metrics cost it about
// 2.6 ms of CPU each (with the Go and process collectors; 100 reads of an
// idle agent, 2026-12-06).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"time"

	"github.com/riptrace/riptrace/fleet"
)

func main() {
	url := flag.String("nats", "", "the NATS server's URL")
	id := flag.String("tracepoint", "", "the tracepoint's id")
	host := flag.String("host", "", "the agent's host name")
	want := flag.Uint64("want", 0, "the hits to wait for")
	still := flag.Duration("still", time.Second, "give up once the count has not moved for this long")
	every := flag.Duration("every", 10*time.Millisecond, "how often the stream is asked")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("stored: ")
	if *url == "" || *id == "" || *host == "" {
		log.Fatal("want -nats, -tracepoint and -host")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := fleet.Connect(ctx, *url, fleet.ClientOptions{Name: "bench-stored"})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	var last uint64
	moved := time.Now()
	for {
		counts, err := c.StoredHits(ctx, *id)
		if err != nil {
			log.Fatal(err)
		}
		n := counts[*host]
		if n != last {
			last, moved = n, time.Now()
		}
		if n >= *want || time.Since(moved) >= *still {
			fmt.Println(n)
			return
		}
		time.Sleep(*every)
	}
}
