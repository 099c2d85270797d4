// Package benchkit is what the Go benchmarks under bench/ share: building
// a target, finding its marked lines, and a fleet to trace it through.
package benchkit

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/riptrace/riptrace/fleet"
)

// Build builds the Go package in dir (relative to the module root) to out.
func Build(dir, out string) error {
	if b, err := exec.Command("go", "build", "-o", out, "./"+dir).CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %v\n%s", dir, err, b)
	}
	return nil
}

// BuildMarked builds the Go package in dir to out, as Build does, and
// returns the line of its main.go marked //@trace(marker).
func BuildMarked(dir, out, marker string) (int, error) {
	if err := Build(dir, out); err != nil {
		return 0, err
	}
	return MarkerLine(filepath.Join(dir, "main.go"), marker)
}

// Median returns the median of v, 0 if v is empty.
func Median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// LoadAvg returns the machine's load averages over 1, 5 and 15 minutes,
// which the benchmarks print beside their figures ("?" if unknown).
func LoadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// MarkerLine returns the line of file marked //@trace(name).
func MarkerLine(file, name string) (int, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	for i, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "//@trace("+name+")") {
			return i + 1, nil
		}
	}
	return 0, fmt.Errorf("no //@trace(%s) marker in %s", name, file)
}

// StartFleet starts an embedded NATS server with its data in dir, on
// 127.0.0.1, and connects a client named name to it. stop shuts both.
func StartFleet(ctx context.Context, dir, name string) (srv *fleet.Server, c *fleet.Client, stop func(), err error) {
	srv, err = fleet.StartServer(ctx, fleet.ServerConfig{Listen: "127.0.0.1:-1", DataDir: filepath.Join(dir, "nats")})
	if err != nil {
		return nil, nil, nil, err
	}
	c, err = fleet.Connect(ctx, srv.ClientURL(), fleet.ClientOptions{Name: name})
	if err != nil {
		srv.Shutdown()
		return nil, nil, nil, err
	}
	return srv, c, func() { c.Close(); srv.Shutdown() }, nil
}
