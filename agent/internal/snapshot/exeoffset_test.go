package snapshot

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/riptrace/riptrace/internal/testsupport"
)

// TestExeOffset: the offset ExeOffset finds for a process's entry point is
// the one its ELF file gives, for an executable whose path has a space
// and that was deleted once started ("... (deleted)" in /proc), as an
// executable upgraded in place is.
func TestExeOffset(t *testing.T) {
	src, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Skip("no /bin/sleep to run:", err)
	}
	exe := filepath.Join(t.TempDir(), "a sleep")
	if err := os.WriteFile(exe, src, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	var want uint64
	found := false
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && p.Vaddr <= f.Entry && f.Entry < p.Vaddr+p.Memsz {
			want, found = f.Entry-p.Vaddr+p.Off, true
		}
	}
	f.Close()
	if !found {
		t.Fatal("the entry point is in no executable segment")
	}
	cmd := exec.Command(exe, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// Its auxiliary vector is there once it runs its own executable.
	var entry uint64
	testsupport.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid)); l != exe {
			return os.ErrNotExist
		}
		entry, err = entryPoint(cmd.Process.Pid)
		return err
	})
	if err := os.Remove(exe); err != nil {
		t.Fatal(err)
	}
	got, err := ExeOffset(cmd.Process.Pid, entry)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("ExeOffset of the entry point %#x = %#x, want %#x", entry, got, want)
	}
}
