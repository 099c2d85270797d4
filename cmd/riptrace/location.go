package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/riptrace/riptrace/fleet"
)

// parseLocation turns FILE:LINE into a fleet location. A FILE that exists
// locally inside a Go module becomes module path + path in module, which
// matches the process whatever directory it was built in; anything else is a
// path suffix.
func parseLocation(arg string) (fleet.Location, error) {
	i := strings.LastIndexByte(arg, ':')
	if i <= 0 {
		return fleet.Location{}, usageError{fmt.Sprintf("want FILE:LINE (for example internal/pay/charge.go:42), got %q", arg)}
	}
	line, err := strconv.Atoi(arg[i+1:])
	if err != nil || line <= 0 {
		return fleet.Location{}, usageError{fmt.Sprintf("%q: the line must be a positive number", arg)}
	}
	file := arg[:i]
	loc := fleet.Location{Path: filepath.ToSlash(file), Line: line}
	if abs, err := filepath.Abs(file); err == nil {
		if _, err := os.Stat(abs); err == nil {
			if mod, rel, ok := moduleOf(abs); ok {
				loc.Module, loc.Path = mod, rel
			}
		}
	}
	return loc, nil
}

// moduleOf finds the go.mod above file and returns the module path and the
// file's slash path inside the module.
func moduleOf(file string) (module, rel string, ok bool) {
	for dir := filepath.Dir(file); ; dir = filepath.Dir(dir) {
		if mod := modulePath(filepath.Join(dir, "go.mod")); mod != "" {
			r, err := filepath.Rel(dir, file)
			if err != nil {
				return "", "", false
			}
			return mod, filepath.ToSlash(r), true
		}
		if parent := filepath.Dir(dir); parent == dir {
			return "", "", false
		}
	}
}

func modulePath(gomod string) string {
	f, err := os.Open(gomod)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module"); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}
