package agent

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/riptrace/riptrace/fleet"
)

// versionElem strips the "@v1.2.3" that module-cache paths carry, so that
// ".../nats.go@v1.55.0/kv.go" matches module "github.com/nats-io/nats.go".
var versionElem = regexp.MustCompile(`@v[^/]+`)

// ResolveFile picks the one source file of the program that loc names. With a
// module, files under module/path win; otherwise, and as a fallback for main
// modules built outside GOPATH (whose DWARF paths are absolute), loc.Path must
// be a suffix of exactly one file on whole path elements.
func ResolveFile(sources []string, loc fleet.Location) (string, error) {
	want := strings.TrimPrefix(path.Clean("/"+loc.Path), "/")
	var full string
	if loc.Module != "" {
		full = loc.Module + "/" + want
	}
	var exact, suffix []string
	for _, f := range sources {
		norm := versionElem.ReplaceAllString(f, "")
		switch {
		case full != "" && (norm == full || strings.HasSuffix(norm, "/"+full)):
			exact = append(exact, f)
		case norm == want || strings.HasSuffix(norm, "/"+want):
			suffix = append(suffix, f)
		}
	}
	matches := exact
	if len(matches) == 0 {
		matches = suffix
	}
	switch len(matches) {
	case 1:
		return matches[0], nil
	case 0:
		return "", fleet.Errorf(fleet.CodeNoFile, "no source file of this program ends in %s%s", want, similar(sources, want))
	}
	sort.Strings(matches)
	if len(matches) > 5 {
		matches = append(matches[:5], "…")
	}
	return "", fleet.Errorf(fleet.CodeNoFile, "%s matches %d source files of this program (%s): give more of the path, or the module", want, len(matches), strings.Join(matches, ", "))
}

// similar lists a few files with the same base name, for the error message.
func similar(sources []string, want string) string {
	base := path.Base(want)
	var same []string
	for _, f := range sources {
		if path.Base(f) == base {
			same = append(same, f)
		}
	}
	if len(same) == 0 {
		return ": check the path (it is matched on whole path elements, for example internal/pay/charge.go)"
	}
	if len(same) > 3 {
		same = append(same[:3], "…")
	}
	return fmt.Sprintf("; files with that name: %s", strings.Join(same, ", "))
}
