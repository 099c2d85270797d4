package demo

import (
	"embed"
	"fmt"
	"strings"
)

// sources are the services' own files, so that `riptrace demo` finds the
// marked lines without a checkout.
//
//go:embed gateway/*.go orders/*.go payments/*.go
var sources embed.FS

// Marker returns the path inside the module (demo/SERVICE/FILE) and the
// 1-based line of the line marked //@trace(name) in service's sources.
func Marker(service, name string) (path string, line int, err error) {
	files, err := sources.ReadDir(service)
	if err != nil {
		return "", 0, fmt.Errorf("no demo service %q", service)
	}
	tag := "@trace(" + name + ")"
	for _, f := range files {
		b, err := sources.ReadFile(service + "/" + f.Name())
		if err != nil {
			return "", 0, err
		}
		for i, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, tag) {
				return "demo/" + service + "/" + f.Name(), i + 1, nil
			}
		}
	}
	return "", 0, fmt.Errorf("demo service %s has no line marked %s", service, tag)
}
