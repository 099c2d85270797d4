package source

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/scanner"
	"go/token"
	"io"
	"regexp"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/riptrace/riptrace/fleet"
)

// Finding the revision of an executable that carries no vcs.revision (built
// with -buildvcs=false, or in a container build context without .git):
// from the version strings it was linked with, or else from what its DWARF
// says of the traced file, matched against that file's committed versions.

// maxFingerprintCommits bounds the history searched for a matching version
// of a file, newest first.
const maxFingerprintCommits = 5000

var (
	hexRevision = regexp.MustCompile(`^[0-9a-f]{7,40}$`)
	// describeRevision is the commit in git describe's output,
	// v1.2.3-4-gabcdef1.
	describeRevision = regexp.MustCompile(`-g([0-9a-f]{7,40})$`)
)

// StampRevision finds the commit one of stamps names (the -ldflags -X
// version strings of an executable, fleet.Process.Stamps): a commit hash
// of 7 to 40 hex digits, git describe's output, or a tag, of this
// repository. Nothing is fetched: a stamp that names nothing here is not
// taken for a revision. It returns the commit and the stamp's name, or
// "" and "".
func (r *Repo) StampRevision(stamps map[string]string) (rev, name string) {
	names := make([]string, 0, len(stamps))
	for n := range stamps {
		names = append(names, n)
	}
	// Commits before versions: a version string is a tag at best.
	isVersion := func(name string) bool {
		return strings.Contains(strings.ToLower(name[strings.LastIndexByte(name, '.')+1:]), "version")
	}
	sort.Slice(names, func(i, j int) bool {
		ci, cj := !isVersion(names[i]), !isVersion(names[j])
		if ci != cj {
			return ci
		}
		return names[i] < names[j]
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range names {
		if h, ok := r.stampCommit(strings.TrimSpace(stamps[n])); ok {
			return h.String(), n
		}
	}
	return "", ""
}

// stampCommit is the commit a stamp's value names here. Lock should be
// held.
func (r *Repo) stampCommit(v string) (plumbing.Hash, bool) {
	if strings.HasSuffix(v, "-dirty") {
		return plumbing.ZeroHash, false // built with uncommitted changes
	}
	if m := describeRevision.FindStringSubmatch(v); m != nil {
		v = m[1]
	}
	if hexRevision.MatchString(strings.ToLower(v)) {
		v = strings.ToLower(v)
		h, err := r.repo.ResolveRevision(plumbing.Revision(v))
		if err != nil || !strings.HasPrefix(h.String(), v) {
			return plumbing.ZeroHash, false
		}
		if _, err := r.repo.CommitObject(*h); err != nil {
			return plumbing.ZeroHash, false
		}
		return *h, true
	}
	if v == "" || strings.ContainsAny(v, " ~^:") {
		return plumbing.ZeroHash, false
	}
	ref, err := r.repo.Tag(v)
	if err != nil {
		return plumbing.ZeroHash, false
	}
	if t, err := r.repo.TagObject(ref.Hash()); err == nil {
		c, err := t.Commit()
		if err != nil {
			return plumbing.ZeroHash, false
		}
		return c.Hash, true
	}
	if _, err := r.repo.CommitObject(ref.Hash()); err != nil {
		return plumbing.ZeroHash, false
	}
	return ref.Hash(), true
}

// FingerprintMatch is the revision whose version of a file matches an
// executable's fingerprint of it.
type FingerprintMatch struct {
	// Revision is the newest commit whose version of the file matches.
	Revision string
	// Versions is how many distinct versions of the file match: more
	// than one, and the line may be another in the others.
	Versions int
}

// NoMatchError says that no committed version of a file matches what an
// executable's DWARF says of it.
type NoMatchError struct {
	Path     string
	Commits  int // commits searched
	Versions int // distinct versions of the file among them
	Why      string
}

func (e *NoMatchError) Error() string {
	if e.Why != "" {
		return fmt.Sprintf("the running code of %s cannot be matched with a committed version: %s", e.Path, e.Why)
	}
	return fmt.Sprintf("the running code of %s matches no committed version of it (%d versions in %d commits searched)", e.Path, e.Versions, e.Commits)
}

// MatchFingerprint finds the revision an executable without vcs.revision
// was built from, by what its DWARF says of the checkout's file rel
// (slash path from the checkout's top): every function declared there
// must be declared at the same line in the file's version, and every line
// with code must be a line with code there. Dead code the linker dropped
// leaves no trace, so a version matches when the executable's code is
// consistent with it. The history of every branch is searched, newest
// commit first; the file is followed under its current name only.
func (r *Repo) MatchFingerprint(rel string, fp *fleet.Fingerprint) (FingerprintMatch, error) {
	switch {
	case fp.Error != "":
		return FingerprintMatch{}, &NoMatchError{Path: rel, Why: "the executable's debug info could not be read (" + fp.Error + ")"}
	case fp.Truncated:
		return FingerprintMatch{}, &NoMatchError{Path: rel, Why: "the file is too large to fingerprint"}
	case len(fp.Funcs) == 0 && len(fp.Lines) == 0:
		return FingerprintMatch{}, &NoMatchError{Path: rel, Why: "the executable has no code of it"}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// Every front end resolves again as the fleet changes: the history is
	// searched once per fingerprint while the references stay.
	refs, err := r.refsState()
	if err != nil {
		return FingerprintMatch{}, fmt.Errorf("reading the history of %s: %w", rel, err)
	}
	b, _ := json.Marshal(fp)
	sum := sha256.Sum256(b)
	key := matchKey{refs, rel, hex.EncodeToString(sum[:])}
	if e, ok := r.matches[key]; ok {
		return e.m, e.err
	}
	m, err := r.matchFingerprint(historyKey{refs, rel}, fp)
	r.matches[key] = matchEntry{m, err}
	return m, err
}

// matchFingerprint is MatchFingerprint without the cache. Lock should be
// held.
func (r *Repo) matchFingerprint(key historyKey, fp *fleet.Fingerprint) (FingerprintMatch, error) {
	h, err := r.history(key)
	if err != nil {
		return FingerprintMatch{}, err
	}
	verdict := make(map[plumbing.Hash]bool) // by blob
	var match FingerprintMatch
	for _, v := range h.versions {
		ok, seen := verdict[v.blob]
		if !seen {
			ok = r.versionMatches(v.blob, fp)
			verdict[v.blob] = ok
			if ok {
				match.Versions++
			}
		}
		if ok && match.Revision == "" {
			match.Revision = v.commit.String()
		}
	}
	if match.Revision == "" {
		return match, &NoMatchError{Path: key.rel, Commits: h.commits, Versions: len(verdict)}
	}
	return match, nil
}

// fileHistory is a file's committed versions: the commits of every branch
// that hold it, newest first, with its blob in each.
type fileHistory struct {
	commits  int // commits searched
	versions []fileVersion
}

type fileVersion struct{ commit, blob plumbing.Hash }

// historyKey names a file's history: refs is the state of every reference
// the history is searched from (refsState).
type historyKey struct{ refs, rel string }

// WarmHistory reads the committed versions of the checkout's file rel, so
// that a MatchFingerprint of it that follows finds them read: a caller
// that must first ask the fleet for a fingerprint reads meanwhile.
func (r *Repo) WarmHistory(rel string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	// An error is MatchFingerprint's to report.
	if refs, err := r.refsState(); err == nil {
		_, _ = r.history(historyKey{refs, rel})
	}
}

// history returns the history key names, read once while the
// repository's references stay: from the user's cache if an earlier
// command read it (see cachedHistory), else from the commits. Lock should
// be held.
func (r *Repo) history(key historyKey) (*fileHistory, error) {
	if h, ok := r.histories[key]; ok {
		return h, nil
	}
	if h := r.cachedHistory(key); h != nil {
		r.histories[key] = h
		return h, nil
	}
	iter, err := r.repo.Log(&git.LogOptions{All: true, Order: git.LogOrderCommitterTime})
	if err != nil {
		return nil, fmt.Errorf("reading the history of %s: %w", key.rel, err)
	}
	defer iter.Close()
	h := &fileHistory{}
	for h.commits < maxFingerprintCommits {
		c, err := iter.Next()
		if err != nil {
			break
		}
		h.commits++
		// The entry names the blob: the file itself is read only per
		// version, by versionMatches.
		t, err := c.Tree()
		if err != nil {
			continue
		}
		if e, err := t.FindEntry(key.rel); err == nil && e.Mode.IsFile() {
			h.versions = append(h.versions, fileVersion{c.Hash, e.Hash})
		}
	}
	r.histories[key] = h
	r.keepHistory(key, h)
	return h, nil
}

// versionMatches reports whether the blob holding a version of a file is
// consistent with fp. Lock should be held.
func (r *Repo) versionMatches(blob plumbing.Hash, fp *fleet.Fingerprint) bool {
	b, err := r.repo.BlobObject(blob)
	if err != nil {
		return false
	}
	rd, err := b.Reader()
	if err != nil {
		return false
	}
	defer rd.Close()
	text, err := io.ReadAll(rd)
	if err != nil {
		return false
	}
	v := readVersion(text)
	if v == nil {
		return false
	}
	for _, l := range fp.Lines {
		if !v.code[l] {
			return false
		}
	}
	for _, fd := range fp.Funcs {
		key, kind := funcKey(fd.Name)
		switch {
		case kind == funcLiteral && !v.lits[fd.Line]:
			return false
		case kind == funcWrapper && !v.code[fd.Line]:
			return false
		case kind == funcDecl && !v.decls[key][fd.Line]:
			return false
		}
	}
	return true
}

// version is what a file's text says of the lines a compiler gives code
// and declarations.
type version struct {
	code  map[int]bool            // lines with a token that is not a comment
	decls map[string]map[int]bool // by funcKey, the lines declaring it
	lits  map[int]bool            // lines where a function literal starts
}

func readVersion(src []byte) *version {
	fset := token.NewFileSet()
	af, err := parser.ParseFile(fset, "", src, parser.SkipObjectResolution)
	if err != nil {
		return nil
	}
	v := &version{code: make(map[int]bool), decls: make(map[string]map[int]bool), lits: make(map[int]bool)}
	var s scanner.Scanner
	s.Init(fset.AddFile("", -1, len(src)), src, nil, 0)
	for {
		pos, tok, _ := s.Scan()
		if tok == token.EOF {
			break
		}
		v.code[fset.Position(pos).Line] = true
	}
	ast.Inspect(af, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.FuncDecl:
			key := n.Name.Name
			if n.Recv != nil && len(n.Recv.List) == 1 {
				key = recvName(n.Recv.List[0].Type) + "." + key
			}
			line := fset.Position(n.Pos()).Line
			if v.decls[key] == nil {
				v.decls[key] = make(map[int]bool)
			}
			v.decls[key][line] = true
		case *ast.FuncLit:
			v.lits[fset.Position(n.Pos()).Line] = true
		}
		return true
	})
	return v
}

// recvName is the type name of a method's receiver, without pointer or
// type parameters.
func recvName(e ast.Expr) string {
	for {
		switch t := e.(type) {
		case *ast.StarExpr:
			e = t.X
		case *ast.ParenExpr:
			e = t.X
		case *ast.IndexExpr:
			e = t.X
		case *ast.IndexListExpr:
			e = t.X
		case *ast.Ident:
			return t.Name
		default:
			return ""
		}
	}
}

// closureElem matches the part of a DWARF function name that the compiler
// adds for a function literal or a wrapper (main.f.func1, main.f-range1,
// main.f.gowrap2, main.f.deferwrap1).
var (
	closureElem = regexp.MustCompile(`(\.func\d+|-range\d+|\.gowrap\d+|\.deferwrap\d+)`)
	funcLitElem = regexp.MustCompile(`\.func\d+$`)
)

// Kinds of function in a fingerprint.
const (
	funcUnknown = iota // a name funcKey does not understand: not checked
	funcDecl           // a function or method declaration
	funcLiteral        // a function literal, declared on the line it starts
	funcWrapper        // a go or defer wrapper, declared on its statement's line
)

// funcKey turns a DWARF function name (example.com/m/pay.(*Svc).Charge,
// main.gen[go.shape.int], main.main.func1) into its kind and, for a
// declaration, the key readVersion declares it under ("Svc.Charge",
// "gen").
func funcKey(name string) (key string, kind int) {
	// Type arguments, possibly nested, are not part of the name.
	var b strings.Builder
	depth := 0
	for _, c := range name {
		switch {
		case c == '[':
			depth++
		case c == ']':
			depth--
		case depth == 0:
			b.WriteRune(c)
		}
	}
	name = b.String()
	name = name[strings.LastIndexByte(name, '/')+1:]
	_, rest, ok := strings.Cut(name, ".")
	switch {
	case !ok:
		return "", funcUnknown
	case funcLitElem.MatchString(rest):
		return "", funcLiteral
	case closureElem.MatchString(rest):
		return "", funcWrapper
	case strings.HasPrefix(rest, "init."):
		return "init", funcDecl // init.0, init.1: each func init
	}
	rest = strings.NewReplacer("(*", "", "(", "", ")", "").Replace(rest)
	if strings.Count(rest, ".") > 1 {
		return "", funcUnknown
	}
	return rest, funcDecl
}
