package agent

import (
	"strings"
	"testing"

	"github.com/riptrace/riptrace/fleet"
)

func TestResolveFile(t *testing.T) {
	sources := []string{
		"/home/u/src/orders/internal/pay/charge.go",
		"/home/u/src/orders/cmd/orders/main.go",
		"/root/go/pkg/mod/github.com/nats-io/nats.go@v1.55.0/jetstream/kv.go",
		"github.com/acme/lib/pay/charge.go", // a -trimpath dependency
		"/usr/local/go/src/runtime/proc.go",
		"/usr/local/go/src/os/proc.go",
	}
	for _, tc := range []struct {
		name string
		loc  fleet.Location
		want string // "" when an error is expected
		err  string
	}{
		{"suffix", fleet.Location{Path: "internal/pay/charge.go"}, sources[0], ""},
		{"module and path, absolute build dir", fleet.Location{Module: "github.com/acme/orders", Path: "internal/pay/charge.go"}, sources[0], ""},
		{"module and path, trimpath", fleet.Location{Module: "github.com/acme/lib", Path: "pay/charge.go"}, sources[3], ""},
		{"module cache with version", fleet.Location{Module: "github.com/nats-io/nats.go", Path: "jetstream/kv.go"}, sources[2], ""},
		{"whole elements only", fleet.Location{Path: "ay/charge.go"}, "", "no source file"},
		{"ambiguous", fleet.Location{Path: "charge.go"}, "", "matches 2 source files"},
		{"ambiguous runtime", fleet.Location{Path: "proc.go"}, "", "give more of the path"},
		{"unknown with same base", fleet.Location{Path: "other/charge.go"}, "", "files with that name"},
		{"cleaned", fleet.Location{Path: "./internal//pay/charge.go"}, sources[0], ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ResolveFile(sources, tc.loc)
			if tc.want != "" {
				if err != nil || got != tc.want {
					t.Fatalf("ResolveFile = %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if e := fleet.AsError(err); e == nil || e.Code != fleet.CodeNoFile || !strings.Contains(e.Message, tc.err) {
				t.Fatalf("ResolveFile = %q, %v; want a %s error containing %q", got, err, fleet.CodeNoFile, tc.err)
			}
		})
	}
}
