package lsp

import (
	"strings"
	"unicode/utf8"
)

// The LSP counts columns in UTF-16 code units (the default position
// encoding, and the only one every client supports); Go strings are UTF-8.
// Every column this package sends or receives goes through these functions.

// utf16Len is the length of s in UTF-16 code units.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
	}
	return n
}

// utf16Col is the UTF-16 column of byte offset off in line.
func utf16Col(line string, off int) int {
	if off > len(line) {
		off = len(line)
	}
	return utf16Len(line[:off])
}

// byteOffset is the byte offset in line of UTF-16 column col, clamped to the
// line: a column inside a surrogate pair or past the end lands on the
// nearest boundary before it.
func byteOffset(line string, col int) int {
	n := 0
	for i, r := range line {
		w := 1
		if r >= 0x10000 {
			w = 2
		}
		if n+w > col {
			return i
		}
		n += w
	}
	return len(line)
}

// splitLines splits text into lines without their terminators ("\n" or
// "\r\n"). A final newline does not start another line.
func splitLines(text string) []string {
	if text == "" {
		return nil
	}
	lines := strings.Split(text, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}
	return lines
}

// truncate shortens s to at most max runes, ending it with "…" when cut.
func truncate(s string, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	i, n := 0, 0
	for j := range s {
		if n == max-1 {
			i = j
			break
		}
		n++
	}
	return s[:i] + "…"
}
