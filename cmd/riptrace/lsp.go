package main

import (
	"context"
	"errors"
	"io"
)

func runLSP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("riptrace lsp is not built yet")
}
