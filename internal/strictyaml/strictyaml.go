// Package strictyaml holds what the strict YAML readers of RipTrace (the
// agent's configuration, scenario files) share: reading a bounded file,
// finding struct fields by their yaml tags, and wording errors (the line of
// a parser error, a node described for a message, the key a misspelt one
// probably meant).
package strictyaml

import (
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

var lineRe = regexp.MustCompile(`^yaml: line (\d+): `)

// Line is the line of a parser error such as "yaml: line 3: did not find
// expected key", 0 if it names none.
func Line(err error) int {
	if m := lineRe.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

// Message is a parser error without its "yaml: line N: " prefix.
func Message(err error) string {
	return strings.TrimPrefix(lineRe.ReplaceAllString(err.Error(), ""), "yaml: ")
}

// Describe names a node for a message: "a list", `the value "x"`.
func Describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping of keys"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("the value %q", n.Value)
	}
	return "an empty document"
}

// Closest is the one of known nearest to key (case aside) by edit
// distance, if any is within two edits.
func Closest(key string, known []string) (string, bool) {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(key), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	return best, best != ""
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// ReadFile reads the file at path, up to max+1 bytes: a caller refuses
// more than max as not the file it wants.
func ReadFile(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, max+1))
}

// FieldByTag is the field of struct v whose yaml tag is name.
func FieldByTag(v reflect.Value, name string) (reflect.Value, bool) {
	t := v.Type()
	for i := range t.NumField() {
		if tag := TagName(t.Field(i)); tag != "" && tag == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// TagName is the key of a field in YAML, "" for a field YAML does not set.
func TagName(f reflect.StructField) string {
	tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if tag == "-" || !f.IsExported() {
		return ""
	}
	return tag
}

// FieldNames are the keys of struct type t, in order.
func FieldNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		if tag := TagName(t.Field(i)); tag != "" {
			names = append(names, tag)
		}
	}
	return names
}

// Join is the path of key under path: "attach" and "uids" make "attach.uids".
func Join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Format words a mistake in a file as every strict reader here does:
// "file:line[:col]: path: msg", leaving out a zero line or column and an
// empty path.
func Format(file string, line, col int, path, msg string) string {
	var b strings.Builder
	b.WriteString(file)
	if line > 0 {
		fmt.Fprintf(&b, ":%d", line)
		if col > 0 {
			fmt.Fprintf(&b, ":%d", col)
		}
	}
	b.WriteString(": ")
	if path != "" {
		b.WriteString(path + ": ")
	}
	b.WriteString(msg)
	return b.String()
}
