package ebpf

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/riptrace/riptrace/agent"
	"github.com/riptrace/riptrace/fleet"
)

// HolderEnv makes the test binary a probe holder for TestSIGKILL: it
// attaches to the pid in HolderEnv, traces main.go at the line in
// HolderLineEnv, prints "READY pid=<its pid> prog=<BPF program id>" and
// "HIT" per hit, until it is killed.
const (
	HolderEnv     = "RIPTRACE_EBPF_HOLDER"
	HolderLineEnv = "RIPTRACE_EBPF_HOLDER_LINE"
)

func init() {
	if os.Getenv(HolderEnv) != "" {
		os.Exit(runHolder())
	}
}

func runHolder() int {
	pid, _ := strconv.Atoi(os.Getenv(HolderEnv))
	line, _ := strconv.Atoi(os.Getenv(HolderLineEnv))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tgt, err := New().Attach(ctx, pid)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := tgt.Set(ctx, agent.Tracepoint{ID: "held", Location: fleet.Location{Path: "main.go", Line: line}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	info, err := tgt.(*target).coll.Programs["capture"].Info()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	id, _ := info.ID()
	fmt.Printf("READY pid=%d prog=%d\n", os.Getpid(), id)
	for range tgt.Hits() {
		fmt.Println("HIT")
	}
	return 0
}
