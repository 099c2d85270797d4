// Package uprobes holds what the agent's two uprobe users share: the eBPF
// backend, whose probes copy a hit, and the Delve backend, whose probes stop
// the thread that hit. Both name a PC by its offset in the executable, and
// both name the kind of a value they could not read.
package uprobes

import (
	"debug/elf"
	"fmt"
	"reflect"
)

// FileOffset turns a PC into the offset in the executable that uprobes
// take; staticBase is where a position-independent executable was loaded.
func FileOffset(exe string, pc, staticBase uint64) (uint64, error) {
	pc -= staticBase
	f, err := elf.Open(exe)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && pc >= p.Vaddr && pc < p.Vaddr+p.Memsz {
			return pc - p.Vaddr + p.Off, nil
		}
	}
	return 0, fmt.Errorf("pc %#x is in no executable segment", pc)
}

// KindName names a kind for "<not captured: …>".
func KindName(k reflect.Kind) string {
	switch k {
	case reflect.Ptr:
		return "pointer"
	case reflect.Invalid:
		return "value"
	}
	return k.String()
}
