package main

import (
	"context"
	"errors"
	"io"
)

func runDAP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("riptrace dap is not built yet")
}
