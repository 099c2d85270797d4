// Package benchkit is what the Go benchmarks under bench/ share: building
// a target, finding its marked lines, and a fleet to trace it through.
package benchkit

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
