// Command uprobe is the bare uprobe of bench/run.sh: it attaches a BPF
// program that only counts hits (agent/ebpf's Counter) at FILE:LINE in
// -pid, prints "READY pid=<its pid>", and on SIGTERM or SIGINT prints
// "COUNT n=<hits>" and removes the probe.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/riptrace/riptrace/agent/ebpf"
)

func main() {
	pid := flag.Int("pid", 0, "process to probe")
	flag.Parse()
	file, line, ok := strings.Cut(flag.Arg(0), ":")
	n, err := strconv.Atoi(line)
	if *pid <= 0 || !ok || err != nil {
		fmt.Fprintln(os.Stderr, "usage: uprobe -pid PID FILE:LINE")
		os.Exit(2)
	}
	c, err := ebpf.NewCounter(*pid, file, n)
	if err != nil {
		fmt.Fprintln(os.Stderr, "uprobe:", err)
		os.Exit(1)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	fmt.Printf("READY pid=%d\n", os.Getpid())
	<-sigs
	hits, err := c.Count()
	c.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "uprobe:", err)
		os.Exit(1)
	}
	fmt.Printf("COUNT n=%d\n", hits)
}
