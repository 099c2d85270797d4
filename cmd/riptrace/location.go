package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/riptrace/riptrace/fleet"
	"github.com/riptrace/riptrace/source"
)

// parseLocation turns FILE:LINE into a fleet location (see source.Locate).
func parseLocation(arg string) (fleet.Location, error) {
	i := strings.LastIndexByte(arg, ':')
	if i <= 0 {
		return fleet.Location{}, usageError{fmt.Sprintf("want FILE:LINE (for example internal/pay/charge.go:42), got %q", arg)}
	}
	line, err := strconv.Atoi(arg[i+1:])
	if err != nil || line <= 0 {
		return fleet.Location{}, usageError{fmt.Sprintf("%q: the line must be a positive number", arg)}
	}
	return source.Locate(arg[:i], line), nil
}
