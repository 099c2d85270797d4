package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
)

// riptrace trace refuses a spec past the bounds before it connects, naming
// the limit and what to write instead.
func TestTraceRefusesPastBounds(t *testing.T) {
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"--stack", "1000000000"}, "capture.stackDepth is 1000000000, more than the 100 an agent allows. Give at most 100"},
		{[]string{"--cond", strings.Repeat("n == 1 || ", 200) + "true"}, "condition's length is 2004, more than the 1024 an agent allows. Write a shorter condition."},
		{[]string{"--hosts", "orders-[ab]"}, "RipTrace globs do not have"},
	} {
		var out, errb bytes.Buffer
		// An address nothing listens on: the refusal must come first.
		args := append(append([]string{"trace", "--nats", "nats://127.0.0.1:1"}, tc.args...), "../../agent/testdata/targets/loop/main.go:63")
		err := run(context.Background(), args, &out, &errb)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("riptrace %s: %v, want it to say %q", strings.Join(tc.args, " "), err, tc.says)
		}
	}
}

// riptrace trace refuses a line past the end of a local file before it
// connects: no revision could have code there.
func TestTraceRefusesLinePastEnd(t *testing.T) {
	src := "../../agent/testdata/targets/loop/main.go"
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	n := strings.Count(string(b), "\n")
	var out, errb bytes.Buffer
	err = run(context.Background(), []string{"trace", "--nats", "nats://127.0.0.1:1", fmt.Sprintf("%s:%d", src, n+1)}, &out, &errb)
	want := fmt.Sprintf("has %d lines, so line %d is past its end", n, n+1)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("riptrace trace %s:%d: %v, want it to say %q", src, n+1, err, want)
	}
	// The last line is a line of the file: refused only for want of a server.
	err = run(context.Background(), []string{"trace", "--nats", "nats://127.0.0.1:1", fmt.Sprintf("%s:%d", src, n)}, &out, &errb)
	if err == nil || strings.Contains(err.Error(), "past its end") {
		t.Errorf("riptrace trace %s:%d: %v, want only the connection refused", src, n, err)
	}
}
