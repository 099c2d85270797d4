package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/riptrace/riptrace/source"
)

// Bounds of what the page is sent from a repository: a tree is listed up
// to maxTreeFiles files, and a file larger than maxFileSize is refused.
const (
	maxTreeFiles = 50000
	maxFileSize  = 4 << 20
)

// revisionRe is a full commit hash: what processes report as vcs.revision.
var revisionRe = regexp.MustCompile(`^[0-9a-f]{40}$`)

// Sources keeps clones of the services' repositories in a directory of its
// own, one per module path, and reads the exact revision a process runs
// from them. A module's repository is found from Repos, or else from the
// module path itself when it names a repository on a known forge.
type Sources struct {
	dir   string
	repos map[string]string // module path → git URL
	auth  transport.AuthMethod
	// FetchTimeout bounds one clone or fetch.
	FetchTimeout time.Duration

	// mu guards clones.
	mu     sync.Mutex
	clones map[string]*clone
}

// clone is one module's repository.
type clone struct {
	module, url, dir string

	// op serializes every git operation, and guards repo and src: go-git
	// is not safe for concurrent use. A fetch may hold it for minutes.
	op   sync.Mutex
	repo *git.Repository // nil until cloned
	src  *source.Repo    // the same repository, for source.Resolve

	// mu guards the state the page is shown, which must not wait for a
	// fetch.
	mu      sync.Mutex
	state   string          // "", fetching, ready, error
	err     string          // why the last clone or fetch failed
	fetched time.Time       // when the last fetch ended
	known   map[string]bool // revisions the clone has
}

// set records where the clone stands and returns errMsg as an error.
func (c *clone) set(state, errMsg string, fetched bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state, c.err = state, errMsg
	if fetched {
		c.fetched = time.Now()
	}
	if errMsg != "" {
		return errors.New(errMsg)
	}
	return nil
}

func (c *clone) know(rev string) {
	c.mu.Lock()
	c.known[rev] = true
	c.mu.Unlock()
}

// NewSources keeps clones under dir. repos maps module paths to git URLs;
// auth, if not nil, is given to every clone and fetch (an SSH key, a
// token): it never leaves the server.
func NewSources(dir string, repos map[string]string, auth transport.AuthMethod) *Sources {
	return &Sources{dir: dir, repos: repos, auth: auth, FetchTimeout: 2 * time.Minute, clones: make(map[string]*clone)}
}

// URL returns the git URL of module's repository: the configured one, or
// for a module on a known forge (github.com/owner/repo/...) the forge's.
func (s *Sources) URL(module string) (string, bool) {
	if u, ok := s.repos[module]; ok {
		return u, true
	}
	parts := strings.Split(module, "/")
	switch parts[0] {
	case "github.com", "gitlab.com", "bitbucket.org", "codeberg.org":
		if len(parts) >= 3 {
			return "https://" + strings.Join(parts[:3], "/") + ".git", true
		}
	}
	return "", false
}

// SourceState is what the page is told about one module's clone.
type SourceState struct {
	Module  string    `json:"module"`
	URL     string    `json:"url,omitempty"`
	State   string    `json:"state"` // none, fetching, ready, error, unmapped
	Error   string    `json:"error,omitempty"`
	Fetched time.Time `json:"fetched,omitzero"`
}

// State says where module's clone stands.
func (s *Sources) State(module string) SourceState {
	u, ok := s.URL(module)
	if !ok {
		return SourceState{Module: module, State: "unmapped", Error: fmt.Sprintf("no git repository is known for module %s. Map it with --ui-repo %s=URL", module, module)}
	}
	c := s.clone(module, u)
	c.mu.Lock()
	defer c.mu.Unlock()
	st := SourceState{Module: module, URL: u, State: c.state, Error: c.err, Fetched: c.fetched}
	if st.State == "" {
		st.State = "none"
	}
	return st
}

func (s *Sources) clone(module, url string) *clone {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clones[module]
	if c == nil {
		c = &clone{module: module, url: url, dir: filepath.Join(s.dir, dirName(module)), known: make(map[string]bool)}
		s.clones[module] = c
	}
	return c
}

// dirName turns a module path into one directory name.
func dirName(module string) string {
	return strings.NewReplacer("/", "_", "\\", "_", ":", "_", "..", "_").Replace(module)
}

// open returns module's clone, opened, with c.op held: the caller
// unlocks it. It clones the repository the first time.
func (s *Sources) open(ctx context.Context, module string) (*clone, error) {
	if s.dir == "" {
		return nil, errors.New("this server keeps no clones (no data directory). Start it with --data")
	}
	u, ok := s.URL(module)
	if !ok {
		return nil, fmt.Errorf("no git repository is known for module %s. Map it with --ui-repo %s=URL", module, module)
	}
	c := s.clone(module, u)
	c.op.Lock()
	if c.repo != nil {
		return c, nil
	}
	if err := s.openLocked(ctx, c); err != nil {
		c.op.Unlock()
		return nil, err
	}
	return c, nil
}

// openLocked opens or clones c. c.op should be held.
func (s *Sources) openLocked(ctx context.Context, c *clone) error {
	repo, err := git.PlainOpen(c.dir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		c.set("fetching", "", false)
		ctx, cancel := context.WithTimeout(ctx, s.FetchTimeout)
		defer cancel()
		repo, err = git.PlainCloneContext(ctx, c.dir, false, &git.CloneOptions{URL: c.url, Auth: s.auth, NoCheckout: true, Tags: git.AllTags})
		if err != nil {
			os.RemoveAll(c.dir) // a half clone would be taken for a clone next time
			return c.set("error", fmt.Sprintf("cloning %s: %v. Check the URL and that this server may read it (--ui-repo, --ui-git-key)", c.url, err), true)
		}
		c.set("fetching", "", true)
	} else if err != nil {
		return c.set("error", fmt.Sprintf("opening the clone in %s: %v. Remove the directory to clone again", c.dir, err), false)
	}
	src, err := source.OpenRepo(c.dir)
	if err != nil {
		return c.set("error", err.Error(), false)
	}
	c.repo, c.src = repo, src
	c.set("ready", "", false)
	return nil
}

// Fetch clones module's repository or fetches what its remote has, now.
func (s *Sources) Fetch(ctx context.Context, module string) error {
	c, err := s.open(ctx, module)
	if err != nil {
		return err
	}
	defer c.op.Unlock()
	return s.fetchLocked(ctx, c)
}

// fetchLocked fetches every branch and tag of c's remote. c.op should be
// held.
func (s *Sources) fetchLocked(ctx context.Context, c *clone) error {
	c.set("fetching", "", false)
	ctx, cancel := context.WithTimeout(ctx, s.FetchTimeout)
	defer cancel()
	err := c.repo.FetchContext(ctx, &git.FetchOptions{
		RemoteName: "origin",
		RefSpecs:   []config.RefSpec{"+refs/heads/*:refs/remotes/origin/*"},
		Tags:       git.AllTags,
		Auth:       s.auth,
		Force:      true,
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return c.set("error", fmt.Sprintf("fetching %s: %v. Check that this server can reach it", c.url, err), true)
	}
	// A fresh handle sees the packs the fetch wrote.
	if err := s.reopenLocked(c); err != nil {
		return c.set("error", err.Error(), true)
	}
	return c.set("ready", "", true)
}

// reopenLocked opens c's repository again. c.op should be held.
func (s *Sources) reopenLocked(c *clone) error {
	repo, err := git.PlainOpen(c.dir)
	if err != nil {
		return fmt.Errorf("opening the clone in %s: %w", c.dir, err)
	}
	src, err := source.OpenRepo(c.dir)
	if err != nil {
		return err
	}
	c.repo, c.src = repo, src
	return nil
}

// EnsureRevision makes module's clone hold rev, fetching once if it does
// not. It is what the server calls when a process of an unknown revision
// appears.
func (s *Sources) EnsureRevision(ctx context.Context, module, rev string) error {
	c, err := s.open(ctx, module)
	if err != nil {
		return err
	}
	defer c.op.Unlock()
	_, err = s.commitLocked(ctx, c, rev)
	return err
}

// commitLocked returns commit rev of c, fetching once if the clone lacks
// it. c.op should be held.
func (s *Sources) commitLocked(ctx context.Context, c *clone, rev string) (*object.Commit, error) {
	if !revisionRe.MatchString(rev) {
		return nil, fmt.Errorf("revision %q is not a full commit hash (40 hex digits, as processes report vcs.revision)", rev)
	}
	h := plumbing.NewHash(rev)
	if cm, err := c.repo.CommitObject(h); err == nil {
		c.know(rev)
		return cm, nil
	}
	if err := s.fetchLocked(ctx, c); err != nil {
		return nil, err
	}
	cm, err := c.repo.CommitObject(h)
	if err != nil {
		return nil, fmt.Errorf("revision %s is not in %s, even after fetching it. Push it there, or map module %s to the repository it was built from", fmt.Sprint(rev[:12]), c.url, c.module)
	}
	c.know(rev)
	return cm, nil
}

// Known reports whether module's clone is known to hold rev, without
// touching git.
func (s *Sources) Known(module, rev string) bool {
	u, ok := s.URL(module)
	if !ok {
		return true // nothing to fetch it from
	}
	c := s.clone(module, u)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.known[rev] || c.state == "error" && time.Since(c.fetched) < time.Minute
}

// Tree is the files of one revision.
type Tree struct {
	Module   string   `json:"module"`
	Revision string   `json:"revision"`
	ModDir   string   `json:"modDir"` // the module's directory in the repository, "" at the top
	Files    []string `json:"files"`
	// Truncated says the tree has more than the files listed.
	Truncated bool `json:"truncated,omitempty"`
}

// Tree lists the files of module's repository at rev.
func (s *Sources) Tree(ctx context.Context, module, rev string) (*Tree, error) {
	c, err := s.open(ctx, module)
	if err != nil {
		return nil, err
	}
	defer c.op.Unlock()
	cm, err := s.commitLocked(ctx, c, rev)
	if err != nil {
		return nil, err
	}
	tree, err := cm.Tree()
	if err != nil {
		return nil, fmt.Errorf("reading the tree of %s: %w", rev[:12], err)
	}
	t := &Tree{Module: module, Revision: rev, Files: []string{}}
	var gomods []string
	// The walker reads tree objects only: tree.Files() would load every
	// blob too, which for 10,000 files costs most of a second.
	w := object.NewTreeWalker(tree, true, nil)
	defer w.Close()
	for {
		name, entry, err := w.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("listing the files of %s: %w", rev[:12], err)
		}
		if entry.Mode == filemode.Dir || entry.Mode == filemode.Submodule {
			continue
		}
		if len(t.Files) >= maxTreeFiles {
			t.Truncated = true
			break
		}
		t.Files = append(t.Files, name)
		if path.Base(name) == "go.mod" {
			gomods = append(gomods, name)
		}
	}
	sort.Strings(t.Files)
	for _, gm := range gomods {
		f, err := tree.File(gm)
		if err != nil {
			continue
		}
		text, err := f.Contents()
		if err == nil && modulePath(text) == module {
			if t.ModDir = path.Dir(gm); t.ModDir == "." {
				t.ModDir = ""
			}
			break
		}
	}
	return t, nil
}

// modulePath reads the module line of a go.mod's text.
func modulePath(gomod string) string {
	for line := range strings.SplitSeq(gomod, "\n") {
		line, _, _ = strings.Cut(line, "//")
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// File returns file p (a slash path from the repository's top) of module's
// repository at rev.
func (s *Sources) File(ctx context.Context, module, rev, p string) ([]byte, error) {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || strings.HasPrefix(p, "../") {
		return nil, fmt.Errorf("%q is not a path inside the repository", p)
	}
	c, err := s.open(ctx, module)
	if err != nil {
		return nil, err
	}
	defer c.op.Unlock()
	cm, err := s.commitLocked(ctx, c, rev)
	if err != nil {
		return nil, err
	}
	f, err := cm.File(p)
	if err != nil {
		return nil, fmt.Errorf("reading %s at %s: %w", p, rev[:12], err)
	}
	if f.Size > maxFileSize {
		return nil, fmt.Errorf("%s is %d bytes, more than the page shows (%d)", p, f.Size, maxFileSize)
	}
	r, err := f.Reader()
	if err != nil {
		return nil, fmt.Errorf("reading %s at %s: %w", p, rev[:12], err)
	}
	defer r.Close()
	return io.ReadAll(io.LimitReader(r, maxFileSize))
}

// Locate names line of file p (a slash path from the repository's top) as
// revision rev has it for the fleet, mapped into every revision of the
// module the fleet runs, with source.Resolve: the code the CLI, the debug
// adapter and the language server map lines with. The clone's work tree
// is checked out at rev for it, so the file Resolve reads is rev's.
func (s *Sources) Locate(ctx context.Context, fl source.Fleet, module, rev, p string, line int) (source.Resolution, error) {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || strings.HasPrefix(p, "../") {
		return source.Resolution{}, fmt.Errorf("%q is not a path inside the repository", p)
	}
	c, err := s.open(ctx, module)
	if err != nil {
		return source.Resolution{}, err
	}
	defer c.op.Unlock()
	cm, err := s.commitLocked(ctx, c, rev)
	if err != nil {
		return source.Resolution{}, err
	}
	wt, err := c.repo.Worktree()
	if err != nil {
		return source.Resolution{}, fmt.Errorf("opening the work tree of %s: %w", c.dir, err)
	}
	if err := wt.Checkout(&git.CheckoutOptions{Hash: cm.Hash, Force: true}); err != nil {
		return source.Resolution{}, fmt.Errorf("checking out %s in %s: %w", rev[:12], c.dir, err)
	}
	res := source.Resolve(ctx, fl, c.src, []source.Line{{File: filepath.Join(c.dir, filepath.FromSlash(p)), Line: line}})
	if res.Errs[0] != nil {
		return res, res.Errs[0]
	}
	if res.Locations[0].Module != module {
		return res, fmt.Errorf("%s at %s is not in module %s (its go.mod names %q)", p, rev[:12], module, res.Locations[0].Module)
	}
	return res, nil
}
