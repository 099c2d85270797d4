package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/riptrace/riptrace/internal/strictyaml"
)

// ParseError is a mistake in a scenario file, at a line and column (0
// when it concerns the whole file).
type ParseError struct {
	File      string
	Line, Col int
	Path      string // the key's path, "expect[2].count"; "" for the file
	Msg       string
}

func (e *ParseError) Error() string {
	return strictyaml.Format(e.File, e.Line, e.Col, e.Path, e.Msg)
}

// maxFileSize bounds what is read: a scenario is a few kilobytes.
const maxFileSize = 1 << 20

// Load reads the scenario file at path; relative paths in it are read from
// the file's directory.
func Load(path string) (*Scenario, error) {
	data, err := strictyaml.ReadFile(path, maxFileSize)
	if err != nil {
		return nil, fmt.Errorf("reading the scenario: %w", err)
	}
	s, err := Parse(data, path)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	s.Dir = dir
	return s, nil
}

// Parse reads a scenario from YAML, strictly: an unknown key, a value of
// the wrong kind, a key set twice or a scenario that does not Check is a
// *ParseError at its line and column. name is the file's name in messages
// and the scenario's default name.
func Parse(data []byte, name string) (*Scenario, error) {
	fail := func(line, col int, path, format string, args ...any) error {
		return &ParseError{File: name, Line: line, Col: col, Path: path, Msg: fmt.Sprintf(format, args...)}
	}
	if len(data) > maxFileSize {
		return nil, fail(0, 0, "", "larger than %d bytes: this is not a scenario", maxFileSize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fail(0, 0, "", "empty: a scenario has services, tracepoints, steps and expect (see docs/scenario.example.yaml)")
		}
		return nil, fail(strictyaml.Line(err), 1, "", "not valid YAML: %s: check the indentation, brackets and quotes on this line and the one before", strictyaml.Message(err))
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, fail(more.Line, more.Column, "", "a second YAML document (after ---): run it as its own file")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	s := &Scenario{}
	w := &decoder{file: name, pos: map[string][2]int{}}
	if err := w.decode(root, reflect.ValueOf(s).Elem(), ""); err != nil {
		return nil, err
	}
	if s.Name == "" {
		s.Name = strings.TrimSuffix(filepath.Base(name), filepath.Ext(name))
	}
	if err := s.Check(); err != nil {
		var ce *CheckError
		if !errors.As(err, &ce) {
			return nil, err
		}
		p := w.at(ce.Path)
		return nil, fail(p[0], p[1], ce.Path, "%s", ce.Msg)
	}
	return s, nil
}

// decoder decodes a YAML tree into the scenario's structs by their yaml
// tags, keeping each key's position for later messages.
type decoder struct {
	file string
	pos  map[string][2]int // key path → line, column
}

// at is the position of path or, if it has none, of its nearest parent.
func (w *decoder) at(path string) [2]int {
	for path != "" {
		if p, ok := w.pos[path]; ok {
			return p
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return [2]int{1, 1}
}

func (w *decoder) fail(n *yaml.Node, path, format string, args ...any) error {
	return &ParseError{File: w.file, Line: n.Line, Col: n.Column, Path: path, Msg: fmt.Sprintf(format, args...)}
}

var durationType = reflect.TypeOf(time.Duration(0))

func (w *decoder) decode(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind == yaml.AliasNode {
		return w.fail(n, path, "aliases (*name) are not read in scenarios: write the value out")
	}
	if n.Kind == yaml.DocumentNode {
		return w.fail(n, path, "empty: a scenario has services, tracepoints, steps and expect")
	}
	if _, ok := w.pos[path]; !ok && path != "" {
		w.pos[path] = [2]int{n.Line, n.Column}
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil // "key:" with nothing: the default
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		v = v.Elem()
	}
	switch {
	case v.Type() == durationType:
		if n.Kind != yaml.ScalarNode {
			return w.fail(n, path, "%s, want a duration such as 200ms or 5s", strictyaml.Describe(n))
		}
		d, err := time.ParseDuration(n.Value)
		if err != nil || d < 0 {
			return w.fail(n, path, "%q is not a duration: write one such as 200ms, 5s or 1m30s", n.Value)
		}
		v.SetInt(int64(d))
		return nil
	case v.Kind() == reflect.Struct:
		return w.mapping(n, v, path)
	case v.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			return w.fail(n, path, "%s, want keys and values under it, such as KEY: value", strictyaml.Describe(n))
		}
		m := reflect.MakeMap(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return w.fail(k, path, "a key must be plain text, not %s", strictyaml.Describe(k))
			}
			if m.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
				return w.fail(k, path+"."+k.Value, "set twice: keep one")
			}
			elem := reflect.New(v.Type().Elem()).Elem()
			if err := w.decode(val, elem, path+"."+k.Value); err != nil {
				return err
			}
			m.SetMapIndex(reflect.ValueOf(k.Value), elem)
		}
		v.Set(m)
		return nil
	case v.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return w.fail(n, path, "%s, want a list: one item per line under it with '- '", strictyaml.Describe(n))
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if err := w.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return w.fail(n, path, "%s, want %s", strictyaml.Describe(n), kindName(v.Kind()))
	}
	switch v.Kind() {
	case reflect.String:
		if n.Tag != "" && n.Tag != "!" && !strings.HasPrefix(n.Tag, "!!") || n.ShortTag() == "!!binary" {
			return w.fail(n, path, "the tag %s is not read here: write the value as plain text", n.Tag)
		}
		if n.ShortTag() == "!!bool" {
			return w.fail(n, path, "%s is read as true or false: put it in quotes if you mean the text", n.Value)
		}
		v.SetString(n.Value)
	case reflect.Bool:
		b, err := strconv.ParseBool(n.Value)
		if err != nil || n.ShortTag() != "!!bool" {
			return w.fail(n, path, "%q is not true or false", n.Value)
		}
		v.SetBool(b)
	case reflect.Int:
		i, err := strconv.ParseInt(n.Value, 10, 32)
		if err != nil || n.ShortTag() != "!!int" {
			return w.fail(n, path, "%q is not a whole number", n.Value)
		}
		v.SetInt(i)
	default:
		panic(fmt.Sprintf("scenario: no decoding for %s", v.Kind())) // a new field's kind
	}
	return nil
}

func (w *decoder) mapping(n *yaml.Node, v reflect.Value, path string) error {
	t := v.Type()
	if n.Kind != yaml.MappingNode {
		return w.fail(n, path, "%s, want keys under it (%s)", strictyaml.Describe(n), strings.Join(strictyaml.FieldNames(t), ", "))
	}
	seen := map[string][2]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return w.fail(k, path, "a key must be a plain word, not %s", strictyaml.Describe(k))
		}
		key := strictyaml.Join(path, k.Value)
		if p, dup := seen[k.Value]; dup {
			return w.fail(k, key, "set twice (first at line %d, column %d): keep one", p[0], p[1])
		}
		seen[k.Value] = [2]int{k.Line, k.Column}
		f, ok := strictyaml.FieldByTag(v, k.Value)
		if !ok {
			return w.fail(k, path, "unknown key %q%s", k.Value, suggest(t, path, k.Value))
		}
		if err := w.decode(val, f, key); err != nil {
			return err
		}
	}
	return nil
}

// suggest names the key meant by a misspelt one, or lists the known keys.
func suggest(t reflect.Type, path, key string) string {
	known := strictyaml.FieldNames(t)
	if best, ok := strictyaml.Closest(key, known); ok {
		return fmt.Sprintf(": did you mean %s?", best)
	}
	return fmt.Sprintf(": the keys here are %s", strings.Join(known, ", "))
}

func kindName(k reflect.Kind) string {
	switch k {
	case reflect.Bool:
		return "true or false"
	case reflect.Int:
		return "a whole number"
	}
	return "a single value"
}
