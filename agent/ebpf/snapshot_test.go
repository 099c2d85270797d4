package ebpf

import (
	"errors"
	"syscall"
	"testing"
)

// TestSnapshotNullPage: memory the program never had (a pointer an
// optimized variable lost reads as 0) reads as the live process would, not
// as something the probe could have copied; memory elsewhere that was not
// copied says so.
func TestSnapshotNullPage(t *testing.T) {
	s := &regionMemory{regions: []region{{addr: 0x10000, data: make([]byte, 16)}}}
	buf := make([]byte, 20)
	if _, err := s.ReadMemory(buf, 0); !errors.Is(err, syscall.EIO) || errors.Is(err, errNotCaptured) {
		t.Errorf("reading at 0x0: %v, want %v as from the live process", err, syscall.EIO)
	}
	if _, err := s.ReadMemory(buf, 0x20000); !errors.Is(err, errNotCaptured) {
		t.Errorf("reading at 0x20000, not copied: %v, want %v", err, errNotCaptured)
	}
	if n, err := s.ReadMemory(buf[:16], 0x10000); n != 16 || err != nil {
		t.Errorf("reading the copied region: %d bytes, %v", n, err)
	}
}
