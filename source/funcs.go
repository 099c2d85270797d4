package source

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// funcName is a function breakpoint's name taken apart: Go's and Delve's
// spellings, "process", "main.process", "pay.(*Server).Charge",
// "github.com/acme/pay.Server.Charge".
type funcName struct {
	qual string // package name or import path (suffix); "" for any
	recv string // receiver type without '*'; "" for a plain function
	name string
}

// parseFuncNames lists the readings of s: "a.B.C" may be package a.B's
// function C or package a's method B.C.
func parseFuncNames(s string) []funcName {
	i := strings.LastIndexByte(s, '.')
	if i < 0 {
		return []funcName{{name: s}}
	}
	prefix, name := s[:i], s[i+1:]
	if strings.HasSuffix(prefix, ")") {
		j := strings.LastIndexByte(prefix, '(')
		if j < 0 {
			return nil
		}
		recv := strings.TrimPrefix(prefix[j+1:len(prefix)-1], "*")
		return []funcName{{qual: strings.TrimSuffix(prefix[:j], "."), recv: recv, name: name}}
	}
	out := []funcName{{qual: prefix, name: name}}
	if k := strings.LastIndexByte(prefix, '.'); k >= 0 {
		out = append(out, funcName{qual: prefix[:k], recv: prefix[k+1:], name: name})
	} else {
		out = append(out, funcName{recv: prefix, name: name})
	}
	return out
}

// LocateFunction finds the one function called name among the Go files
// under root (test files and the go command's skipped directories aside,
// testdata included) and returns its file and the line of its first
// statement, where a tracepoint sees its arguments.
func LocateFunction(root, name string) (string, int, error) {
	names := parseFuncNames(name)
	if name == "" || len(names) == 0 || !token.IsIdentifier(names[0].name) {
		return "", 0, fmt.Errorf("%q is not a function name: write pkg.Func or pkg.(*Type).Method", name)
	}
	type match struct {
		file string
		line int
	}
	var matches []match
	fset := token.NewFileSet()
	needle := []byte(names[0].name)
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		base := d.Name()
		if d.IsDir() {
			if p != root && (strings.HasPrefix(base, ".") || strings.HasPrefix(base, "_") || base == "vendor" || base == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(base, ".go") || strings.HasSuffix(base, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(src, needle) {
			return nil
		}
		f, err := parser.ParseFile(fset, p, src, parser.SkipObjectResolution)
		if err != nil {
			return nil
		}
		importPath := ""
		if mod, _, rel, ok := ModuleOf(p); ok {
			importPath = path.Join(mod, path.Dir(rel))
		}
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Body == nil || fd.Name.Name != names[0].name {
				continue
			}
			recv := receiverType(fd)
			for _, n := range names {
				if n.recv != recv {
					continue
				}
				if n.qual != "" && n.qual != f.Name.Name && n.qual != importPath && !strings.HasSuffix(importPath, "/"+n.qual) {
					continue
				}
				line := fset.Position(fd.Body.Rbrace).Line
				if len(fd.Body.List) > 0 {
					line = fset.Position(fd.Body.List[0].Pos()).Line
				}
				matches = append(matches, match{p, line})
				break
			}
		}
		return nil
	})
	switch len(matches) {
	case 1:
		return matches[0].file, matches[0].line, nil
	case 0:
		return "", 0, fmt.Errorf("no function %s in the Go files under %s: check the name (pkg.Func, pkg.(*Type).Method) or the \"cwd\" attribute", name, root)
	}
	var where []string
	for _, m := range matches {
		rel, _ := filepath.Rel(root, m.file)
		where = append(where, fmt.Sprintf("%s:%d", rel, m.line))
	}
	sort.Strings(where)
	return "", 0, fmt.Errorf("%s names %d functions (%s): qualify it with its package path", name, len(matches), strings.Join(where, ", "))
}

// receiverType is the receiver's type name without '*' and type
// parameters, or "".
func receiverType(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return ""
	}
	return recvName(fd.Recv.List[0].Type)
}
