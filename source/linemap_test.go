package source

import (
	"strconv"
	"strings"
	"testing"
)

func TestLineMap(t *testing.T) {
	base := "a\nb\nc\nTRACE\nd\ne\n"
	for _, tc := range []struct {
		name     string
		from, to string
		line     int // in from
		want     int
		why      Mapping
	}{
		{"same", base, base, 4, 4, Mapped},
		{"insert above", base, "a\nnew\nb\nc\nTRACE\nd\ne\n", 4, 5, Mapped},
		{"insert two above", base, "x\ny\na\nb\nc\nTRACE\nd\ne\n", 4, 6, Mapped},
		{"delete above", base, "a\nc\nTRACE\nd\ne\n", 4, 3, Mapped},
		{"insert below", base, "a\nb\nc\nTRACE\nd\nnew\ne\n", 4, 4, Mapped},
		{"delete below", base, "a\nb\nc\nTRACE\ne\n", 4, 4, Mapped},
		{"insert right before", base, "a\nb\nc\nnew\nTRACE\nd\ne\n", 4, 5, Mapped},
		{"insert right after", base, "a\nb\nc\nTRACE\nnew\nd\ne\n", 4, 4, Mapped},
		{"changed", base, "a\nb\nc\nTRACE2\nd\ne\n", 4, 0, Changed},
		{"changed with neighbours", base, "a\nb\nX\nY\nZ\nd\ne\n", 4, 0, Changed},
		{"deleted", base, "a\nb\nc\nd\ne\n", 4, 0, Missing},
		{"line after a deletion", base, "a\nb\nc\nd\ne\n", 5, 4, Mapped},
		{"line below an insertion", "a\nb\nc\nd\ne\n", base, 4, 5, Mapped},
		{"no final newline", "a\nb\nTRACE", "a\nx\nb\nTRACE\n", 3, 4, Mapped},
		{"past the end", base, base, 7, 0, OutOfRange},
		{"zero", base, base, 0, 0, OutOfRange},
		{"empty to", base, "", 1, 0, Missing},
		{"moved elsewhere", base, "TRACE\na\nb\nc\nd\ne\n", 4, 0, Missing},
		{"both sides edited around it", base, "a\nB\nc\nTRACE\nD\ne\n", 4, 4, Mapped},
		{"CRLF checkout, LF revision", "a\r\nb\r\nTRACE\r\n", "a\nx\nb\nTRACE\n", 3, 4, Mapped},
		{"duplicate lines", "}\n}\nTRACE\n}\n", "}\nx\n}\nTRACE\n}\n", 3, 4, Mapped},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewLineMap(splitLines([]byte(tc.from)), splitLines([]byte(tc.to)))
			got, why := m.AToB(tc.line)
			if got != tc.want || why != tc.why {
				t.Fatalf("AToB(%d) = %d, %v; want %d, %v", tc.line, got, why, tc.want, tc.why)
			}
			if why == Mapped {
				if back, _ := m.BToA(got); back != tc.line {
					t.Fatalf("BToA(%d) = %d, want %d back", got, back, tc.line)
				}
			}
		})
	}
}

// naiveLCS is the reference: the length of the longest common subsequence
// of a and b by dynamic programming, the number of lines any minimal line
// diff keeps.
func naiveLCS(a, b []string) int {
	dp := make([][]int, len(a)+1)
	for i := range dp {
		dp[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				dp[i][j] = dp[i+1][j+1] + 1
			} else {
				dp[i][j] = max(dp[i+1][j], dp[i][j+1])
			}
		}
	}
	return dp[0][0]
}

// FuzzLineMap checks the diff mapping against a naive reference: every
// mapped line has the same text on both sides, the mapping is strictly
// increasing and the same in both directions, it keeps as many lines as the
// longest common subsequence (the diff is minimal), and a line that is the
// same on both sides of a single-line edit maps by offset.
func FuzzLineMap(f *testing.F) {
	f.Add("a\nb\nc\n", "a\nc\n", uint8(1))
	f.Add("a\nb\nc\n", "a\nx\nb\nc\n", uint8(2))
	f.Add("}\n}\n}\n", "}\n", uint8(0))
	f.Add("func f() {\n\treturn\n}\n", "func f() {\n\tx := 1\n\treturn\n}\n", uint8(1))
	f.Add("", "a\n", uint8(0))
	f.Add("a\r\nb\n", "a\nb\n", uint8(0))
	f.Add("\xff\xfe\n\ud7ff\n", "\ud7ff\n\xff\n", uint8(1))
	f.Fuzz(func(t *testing.T, from, to string, pick uint8) {
		a, b := splitLines([]byte(from)), splitLines([]byte(to))
		if len(a) > 200 || len(b) > 200 {
			return
		}
		m := NewLineMap(a, b)
		kept, last := 0, 0
		for i := 1; i <= len(a); i++ {
			j, why := m.AToB(i)
			if why != Mapped {
				if j != 0 || why == OutOfRange {
					t.Fatalf("AToB(%d) = %d, %v", i, j, why)
				}
				continue
			}
			if j <= last || j > len(b) {
				t.Fatalf("AToB(%d) = %d after %d: not increasing within 1..%d", i, j, last, len(b))
			}
			if a[i-1] != b[j-1] {
				t.Fatalf("line %d %q mapped to line %d %q", i, a[i-1], j, b[j-1])
			}
			if back, _ := m.BToA(j); back != i {
				t.Fatalf("BToA(%d) = %d, want %d", j, back, i)
			}
			last = j
			kept++
		}
		for j := 1; j <= len(b); j++ {
			if i, why := m.BToA(j); why == Mapped {
				if k, _ := m.AToB(i); k != j {
					t.Fatalf("BToA(%d) = %d but AToB(%d) = %d", j, i, i, k)
				}
			}
		}
		if want := naiveLCS(a, b); kept != want {
			t.Fatalf("kept %d lines, the longest common subsequence has %d\nfrom %q\nto   %q", kept, want, a, b)
		}
		// A single-line insertion into a: every other line maps by offset.
		if len(a) > 0 {
			at := int(pick) % (len(a) + 1)
			ins := append(append(append([]string{}, a[:at]...), "\x00inserted"), a[at:]...)
			m := NewLineMap(a, ins)
			for i := 1; i <= len(a); i++ {
				want := i
				if i > at {
					want = i + 1
				}
				if j, _ := m.AToB(i); j != want && !strings.Contains(strings.Join(a, "\n"), "\x00inserted") {
					t.Fatalf("after inserting a line at %d, AToB(%d) = %d, want %d", at, i, j, want)
				}
			}
		}
	})
}

// A file with more distinct lines than the diff's line-to-rune encoding has
// below the UTF-16 surrogate range still maps line by line.
func TestLineMapLargeFile(t *testing.T) {
	const n = 60000
	a := make([]string, n)
	for i := range a {
		a[i] = "line " + strconv.Itoa(i+1)
	}
	// Delete line 100, insert a line after line 59000.
	b := append(append(append(append([]string{}, a[:99]...), a[100:59000]...), "inserted"), a[59000:]...)
	m := NewLineMap(a, b)
	for _, tc := range []struct{ line, want int }{{1, 1}, {99, 99}, {101, 100}, {59000, 58999}, {59001, 59001}, {n, n}} {
		if got, why := m.AToB(tc.line); got != tc.want || why != Mapped {
			t.Errorf("AToB(%d) = %d, %v; want %d", tc.line, got, why, tc.want)
		}
	}
	if _, why := m.AToB(100); why != Missing {
		t.Errorf("the deleted line: %v, want missing", why)
	}
}
