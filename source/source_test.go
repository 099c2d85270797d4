package source

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/riptrace/riptrace/fleet"
)

func write(t *testing.T, root, rel, text string) string {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLocate(t *testing.T) {
	root := t.TempDir()
	write(t, root, "go.mod", "module github.com/acme/orders // the shop\n\ngo 1.26\n")
	charge := write(t, root, "internal/pay/charge.go", "package pay\n")
	if got, want := Locate(charge, 42), (fleet.Location{Module: "github.com/acme/orders", Path: "internal/pay/charge.go", Line: 42}); !reflect.DeepEqual(got, want) {
		t.Fatalf("Locate = %+v, want %+v", got, want)
	}
	if got := Locate("pay/charge.go", 3); got.Module != "" || got.Path != "pay/charge.go" {
		t.Fatalf("Locate of a path that is not a local file = %+v, want a suffix", got)
	}
}

func TestWorkspaceLocal(t *testing.T) {
	root := t.TempDir()
	write(t, root, "go.mod", "module github.com/acme/orders\n")
	charge := write(t, root, "internal/pay/charge.go", "package pay\n")
	main := write(t, root, "cmd/orders/main.go", "package main\n")
	write(t, root, "cmd/admin/main.go", "package main\n")
	write(t, root, "testdata/internal/pay/charge.go", "package pay\n")
	w, err := NewWorkspace(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		remote, want string
		ok           bool
	}{
		{"github.com/acme/orders/internal/pay/charge.go", charge, true}, // -trimpath
		{"/build/src/orders/internal/pay/charge.go", charge, true},      // another build directory
		{"/app/cmd/orders/main.go", main, true},                         // a container
		{"/elsewhere/main.go", "", false},                               // two main.go: ambiguous
		{"/usr/local/go/src/runtime/proc.go", "", false},                // not ours
		{charge, charge, true},                                          // built right here
	} {
		got, ok := w.Local(tc.remote)
		if ok != tc.ok || got != tc.want {
			t.Errorf("Local(%q) = %q, %v; want %q, %v", tc.remote, got, ok, tc.want, tc.ok)
		}
	}
}
