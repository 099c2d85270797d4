package agent

import (
	"bytes"
	"debug/dwarf"
	"debug/elf"
	"errors"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/riptrace/riptrace/fleet"
)

// What the agent reads of an executable that carries no vcs.revision, so
// that a client can find the revision it was built from (source.Resolve):
// its Go build ID, which names the build across replicas and hosts, the
// version strings set at link time, and on request a fingerprint of one
// source file from its DWARF.

// goBuildID reads the Go build ID from the executable's .note.go.buildid
// section, "" if it has none.
func goBuildID(f *elf.File) string {
	sec := f.Section(".note.go.buildid")
	if sec == nil {
		return ""
	}
	b, err := io.ReadAll(io.LimitReader(sec.Open(), 1024))
	if err != nil || len(b) < 16 {
		return ""
	}
	bo := f.ByteOrder
	namesz, descsz := bo.Uint32(b[0:]), bo.Uint32(b[4:])
	off := 12 + int((namesz+3)&^3)
	if namesz != 4 || !bytes.Equal(b[12:15], []byte("Go\x00")) || off+int(descsz) > len(b) {
		return ""
	}
	return string(b[off : off+int(descsz)])
}

// stampNames are the last elements of variable names that version stamps
// are set in with -ldflags -X, lower-cased: main.commit, main.version,
// …/version.Revision, …/build.GitCommit and their like.
var stampNames = map[string]bool{
	"commit": true, "gitcommit": true, "commithash": true, "githash": true, "gitsha": true, "sha": true,
	"revision": true, "gitrevision": true, "vcsrevision": true, "buildcommit": true,
	"version": true, "gitversion": true, "buildversion": true, "tag": true, "gittag": true,
}

// linkStamps returns the string variables set by -ldflags -X whose names
// say they hold a version or a commit, by variable name. The linker puts
// the value of each -X variable in a symbol of its own, NAME.str; a
// variable initialized in source has none, so a default such as "dev" is
// never taken for a stamp.
func linkStamps(f *elf.File) map[string]string {
	syms, err := f.Symbols()
	if err != nil {
		return nil
	}
	byName := make(map[string]elf.Symbol)
	for _, s := range syms {
		if strings.HasSuffix(s.Name, ".str") {
			byName[s.Name] = s
		}
	}
	var out map[string]string
	for _, s := range syms {
		last := s.Name[strings.LastIndexByte(s.Name, '.')+1:]
		// The toolchain sets runtime.buildVersion the same way.
		if !stampNames[strings.ToLower(last)] || strings.HasPrefix(s.Name, "runtime.") || len(out) >= fleet.MaxStamps {
			continue
		}
		str, ok := byName[s.Name+".str"]
		if !ok {
			continue
		}
		// The variable is a string header, pointer then length; the
		// bytes are in NAME.str, which the pointer points to.
		hdr := readSymbol(f, s)
		word := 8
		if f.Class == elf.ELFCLASS32 {
			word = 4
		}
		if len(hdr) != 2*word {
			continue
		}
		var n uint64
		if word == 8 {
			n = f.ByteOrder.Uint64(hdr[8:])
		} else {
			n = uint64(f.ByteOrder.Uint32(hdr[4:]))
		}
		if n == 0 || n > fleet.MaxStampLen || n > str.Size {
			continue
		}
		str.Size = n
		if b := readSymbol(f, str); b != nil {
			if out == nil {
				out = make(map[string]string)
			}
			out[s.Name] = string(b)
		}
	}
	return out
}

// readSymbol reads a symbol's bytes from its section, nil if it has none.
func readSymbol(f *elf.File, s elf.Symbol) []byte {
	if int(s.Section) >= len(f.Sections) || s.Size == 0 || s.Size > 1<<16 {
		return nil
	}
	sec := f.Sections[s.Section]
	if sec.Type == elf.SHT_NOBITS || s.Value < sec.Addr || s.Value+s.Size > sec.Addr+sec.Size {
		return nil
	}
	b := make([]byte, s.Size)
	if _, err := sec.ReadAt(b, int64(s.Value-sec.Addr)); err != nil {
		return nil
	}
	return b
}

// dwarfFingerprint reads what the DWARF of exe says of file (a name its
// line tables use): the functions declared there, with their lines, and
// the lines that have code.
func dwarfFingerprint(exe *os.File, file string) *fleet.Fingerprint {
	fp := &fleet.Fingerprint{File: file}
	f, err := elf.NewFile(exe)
	if err != nil {
		fp.Error = "reading the executable: " + err.Error()
		return fp
	}
	d, err := f.DWARF()
	if err != nil {
		fp.Error = "reading the debug info: " + err.Error()
		return fp
	}
	lines := make(map[int]bool)
	funcs := make(map[fleet.FuncDecl]bool)
	r := d.Reader()
	for {
		cu, err := r.Next()
		if err != nil {
			fp.Error = "reading the debug info: " + err.Error()
			return fp
		}
		if cu == nil {
			break
		}
		if cu.Tag != dwarf.TagCompileUnit {
			r.SkipChildren()
			continue
		}
		lr, _ := d.LineReader(cu)
		if lr == nil {
			r.SkipChildren()
			continue
		}
		files := lr.Files()
		idx := -1
		for i, fe := range files {
			if fe != nil && fe.Name == file {
				idx = i
			}
		}
		if idx < 0 {
			r.SkipChildren()
			continue
		}
		var e dwarf.LineEntry
		for {
			if err := lr.Next(&e); err != nil {
				if !errors.Is(err, io.EOF) {
					fp.Error = "reading the line table: " + err.Error()
					return fp
				}
				break
			}
			if e.File != nil && e.File.Name == file && e.Line > 0 && e.IsStmt {
				lines[e.Line] = true
			}
		}
		// The compile unit's children: its functions. Inlined-only
		// functions (DW_AT_inline) name no file; their lines are in the
		// line table.
		for {
			ent, err := r.Next()
			if err != nil || ent == nil || ent.Tag == 0 {
				break
			}
			if ent.Tag == dwarf.TagSubprogram {
				df, ok1 := ent.Val(dwarf.AttrDeclFile).(int64)
				dl, ok2 := ent.Val(dwarf.AttrDeclLine).(int64)
				name, _ := ent.Val(dwarf.AttrName).(string)
				if ok1 && ok2 && int(df) == idx && name != "" {
					funcs[fleet.FuncDecl{Name: name, Line: int(dl)}] = true
				}
			}
			if ent.Children {
				r.SkipChildren()
			}
		}
	}
	for l := range lines {
		fp.Lines = append(fp.Lines, l)
	}
	sort.Ints(fp.Lines)
	for fd := range funcs {
		fp.Funcs = append(fp.Funcs, fd)
	}
	sort.Slice(fp.Funcs, func(i, j int) bool {
		a, b := fp.Funcs[i], fp.Funcs[j]
		return a.Line < b.Line || a.Line == b.Line && a.Name < b.Name
	})
	if len(fp.Lines) > fleet.MaxFingerprintLines {
		fp.Lines, fp.Truncated = fp.Lines[:fleet.MaxFingerprintLines], true
	}
	if len(fp.Funcs) > fleet.MaxFingerprintFuncs {
		fp.Funcs, fp.Truncated = fp.Funcs[:fleet.MaxFingerprintFuncs], true
	}
	return fp
}
