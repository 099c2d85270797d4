package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// Repo is the git repository of a local checkout. It maps lines of the
// checkout's files (HEAD plus uncommitted edits, as the editor shows them)
// to and from the same file in other revisions, fetching revisions it lacks
// from the repository's remotes. It is safe for concurrent use; mappings are
// cached until the local file changes.
type Repo struct {
	root string // absolute, symlinks resolved

	// FetchTimeout bounds fetching one missing revision from all remotes.
	FetchTimeout time.Duration

	mu      sync.Mutex // guards everything below; go-git is not safe for concurrent use
	repo    *git.Repository
	fetched map[string]fetchResult    // by revision as asked
	commits map[string]plumbing.Hash  // full hashes found to be commits, as asked
	pairs   map[pairKey]*pairing      // by (commit, local path)
	renames map[renameKey]renameEntry // by (commit, commit, path)
	matches map[matchKey]matchEntry   // fingerprints matched, by (references, path, fingerprint)

	histories map[historyKey]*fileHistory // files' committed versions, by (references, path)
}

type matchKey struct{ refs, rel, fp string }

type matchEntry struct {
	m   FingerprintMatch
	err error
}

type fetchResult struct {
	err  error
	when time.Time
}

// fetchRetry is how long a failed fetch is remembered, so that mapping a
// stream of hits does not fetch once per hit.
const fetchRetry = time.Minute

type pairKey struct{ rev, rel string }

type renameKey struct{ from, to, rel string }

type renameEntry struct {
	path string
	err  error
}

// pairing is the local file and its version in one revision, diffed.
type pairing struct {
	size    int64 // of the local file when diffed; with mtime, the cache key
	mtime   time.Time
	content []byte   // of the local file
	remote  string   // the file's path in the revision
	local   []string // lines of the checkout's file
	theirs  []string // lines in the revision
	m       *LineMap // A: local, B: the revision
	missing error    // the file does not exist in the revision
}

// OpenRepo opens the git repository that contains dir (a file or a
// directory), looking upwards for .git as git does.
func OpenRepo(dir string) (*Repo, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(abs); err == nil && !fi.IsDir() {
		abs = filepath.Dir(abs)
	}
	repo, err := git.PlainOpenWithOptions(abs, &git.PlainOpenOptions{DetectDotGit: true, EnableDotGitCommonDir: true})
	if err != nil {
		return nil, fmt.Errorf("opening the git repository around %s: %w", abs, err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil, fmt.Errorf("opening the git repository around %s: %w", abs, err)
	}
	if st, ok := repo.Storer.(*filesystem.Storage); ok {
		if repo, err = git.Open(readFast(st), wt.Filesystem); err != nil {
			return nil, fmt.Errorf("opening the git repository around %s: %w", abs, err)
		}
	}
	root, err := filepath.EvalSymlinks(wt.Filesystem.Root())
	if err != nil {
		return nil, err
	}
	return &Repo{
		root:         root,
		FetchTimeout: time.Minute,
		repo:         repo,
		fetched:      make(map[string]fetchResult),
		commits:      make(map[string]plumbing.Hash),
		pairs:        make(map[pairKey]*pairing),
		renames:      make(map[renameKey]renameEntry),
		matches:      make(map[matchKey]matchEntry),
		histories:    make(map[historyKey]*fileHistory),
	}, nil
}

// Root returns the checkout's top directory.
func (r *Repo) Root() string { return r.root }

// Rel returns file's slash path relative to the checkout's top directory.
func (r *Repo) Rel(file string) (string, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return "", err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	rel, err := filepath.Rel(r.root, abs)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%s is outside the checkout %s", file, r.root)
	}
	return filepath.ToSlash(rel), nil
}

// Head returns the commit the checkout is on.
func (r *Repo) Head() (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, err := r.head()
	return h.String(), err
}

// Lock should be held.
func (r *Repo) head() (plumbing.Hash, error) {
	ref, err := r.repo.Head()
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("reading HEAD of %s: %w", r.root, err)
	}
	return ref.Hash(), nil
}

// Clean reports whether the checkout's file relPath is the same as in HEAD.
func (r *Repo) Clean(relPath string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	head, err := r.head()
	if err != nil {
		return false
	}
	theirs, err := r.lines(head, relPath)
	if err != nil {
		return false
	}
	b, err := os.ReadFile(filepath.Join(r.root, filepath.FromSlash(relPath)))
	if err != nil {
		return false
	}
	return joinLines(splitLines(b)) == joinLines(theirs)
}

// LineIn returns the line in revision rev that line localLine of the
// checkout's file relPath (slash path from the checkout's top) is. If the
// line was changed in rev or does not exist there, the error is a
// *LineError saying so; if rev is not in the repository and cannot be
// fetched, a *MissingRevisionError.
func (r *Repo) LineIn(rev, relPath string, localLine int) (int, error) {
	p, hash, err := r.pair(rev, relPath)
	if err != nil {
		return 0, err
	}
	if p.missing != nil {
		return 0, p.missing
	}
	n, why := p.m.AToB(localLine)
	if why == Mapped {
		return n, nil
	}
	e := &LineError{Path: relPath, Line: localLine, Text: lineText(p.local, localLine), Rev: hash, Why: why, Lines: len(p.local)}
	if why != OutOfRange {
		e.Uncommitted = r.editedSinceHead(relPath, localLine)
	}
	return 0, e
}

// editedSinceHead reports whether line localLine of the checkout's file
// relPath is an uncommitted edit: changed, or not there, in HEAD.
func (r *Repo) editedSinceHead(relPath string, localLine int) bool {
	p, _, err := r.pair("HEAD", relPath)
	if err != nil || p.missing != nil {
		return false
	}
	_, why := p.m.AToB(localLine)
	return why != Mapped
}

// LocalLine is the reverse of LineIn: it returns the line of the checkout's
// file relPath that line remoteLine of the same file in revision rev is (the
// file may have had another name in rev, see PathIn).
func (r *Repo) LocalLine(rev, relPath string, remoteLine int) (int, error) {
	p, hash, err := r.pair(rev, relPath)
	if err != nil {
		return 0, err
	}
	if p.missing != nil {
		return 0, p.missing
	}
	n, why := p.m.BToA(remoteLine)
	if why == Mapped {
		return n, nil
	}
	return 0, &LineError{Path: p.remote, Line: remoteLine, Text: lineText(p.theirs, remoteLine), Rev: hash, Why: why, Lines: len(p.theirs), ToLocal: true}
}

// PathIn returns the path in revision rev of the checkout's file relPath:
// relPath itself, or the name it had there if it was renamed since.
func (r *Repo) PathIn(rev, relPath string) (string, error) {
	p, _, err := r.pair(rev, relPath)
	if err != nil {
		return "", err
	}
	if p.missing != nil {
		return "", p.missing
	}
	return p.remote, nil
}

// LocalPath is the reverse of PathIn: the checkout's path of the file that
// revision rev names remotePath.
func (r *Repo) LocalPath(rev, remotePath string) (string, error) {
	if _, err := os.Stat(filepath.Join(r.root, filepath.FromSlash(remotePath))); err == nil {
		return remotePath, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	hash, err := r.resolve(rev)
	if err != nil {
		return "", err
	}
	head, err := r.head()
	if err != nil {
		return "", err
	}
	p, err := r.renamed(hash, head, remotePath)
	if err != nil {
		return "", err
	}
	return p, nil
}

// Resolve returns the full hash of commit rev, fetching it from the
// repository's remotes if it is not in the repository.
func (r *Repo) Resolve(rev string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, err := r.resolve(rev)
	return h.String(), err
}

// pair returns the diffed pair for the checkout's relPath and rev, from the
// cache while the local file has not changed.
func (r *Repo) pair(rev, relPath string) (*pairing, string, error) {
	relPath = path.Clean(relPath)
	file := filepath.Join(r.root, filepath.FromSlash(relPath))
	fi, err := os.Stat(file)
	if err != nil {
		return nil, "", fmt.Errorf("reading the checkout's %s: %w", relPath, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	hash, err := r.resolve(rev)
	if err != nil {
		return nil, "", err
	}
	key := pairKey{hash.String(), relPath}
	if p := r.pairs[key]; p != nil && p.size == fi.Size() && p.mtime.Equal(fi.ModTime()) {
		return p, key.rev, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, "", fmt.Errorf("reading the checkout's %s: %w", relPath, err)
	}
	if p := r.pairs[key]; p != nil && bytes.Equal(p.content, b) {
		// Touched, not changed (an editor saving the same text).
		p.size, p.mtime = fi.Size(), fi.ModTime()
		return p, key.rev, nil
	}
	p := &pairing{size: fi.Size(), mtime: fi.ModTime(), content: b, remote: relPath, local: splitLines(b)}
	p.theirs, err = r.lines(hash, relPath)
	if errors.Is(err, object.ErrFileNotFound) {
		head, herr := r.head()
		if herr != nil {
			return nil, "", herr
		}
		p.remote, err = r.renamed(head, hash, relPath)
		if err == nil {
			p.theirs, err = r.lines(hash, p.remote)
		}
		var fe *FileError
		if errors.As(err, &fe) {
			p.missing, err = err, nil
		}
	}
	if err != nil {
		return nil, "", err
	}
	if p.missing == nil {
		p.m = NewLineMap(p.local, p.theirs)
	}
	r.pairs[key] = p
	return p, key.rev, nil
}

// lines returns the lines of file rel in commit hash. Lock should be held.
func (r *Repo) lines(hash plumbing.Hash, rel string) ([]string, error) {
	c, err := r.repo.CommitObject(hash)
	if err != nil {
		return nil, fmt.Errorf("reading commit %s: %w", shortRev(hash.String()), err)
	}
	f, err := c.File(rel)
	if err != nil {
		return nil, fmt.Errorf("reading %s in revision %s: %w", rel, shortRev(hash.String()), err)
	}
	s, err := f.Contents()
	if err != nil {
		return nil, fmt.Errorf("reading %s in revision %s: %w", rel, shortRev(hash.String()), err)
	}
	return splitLines([]byte(s)), nil
}

// FileError says that a file does not exist in a revision under its name or
// any name git's rename detection finds.
type FileError struct {
	Path string
	Rev  string
}

func (e *FileError) Error() string {
	return fmt.Sprintf("%s does not exist in revision %s (not under another name either)", e.Path, shortRev(e.Rev))
}

// renamed finds what file rel of commit from is called in commit to, through
// git's rename detection between the two trees. Lock should be held.
func (r *Repo) renamed(from, to plumbing.Hash, rel string) (string, error) {
	key := renameKey{from.String(), to.String(), rel}
	if e, ok := r.renames[key]; ok {
		return e.path, e.err
	}
	p, err := r.findRename(from, to, rel)
	r.renames[key] = renameEntry{p, err}
	return p, err
}

func (r *Repo) findRename(from, to plumbing.Hash, rel string) (string, error) {
	trees := make([]*object.Tree, 2)
	for i, h := range []plumbing.Hash{from, to} {
		c, err := r.repo.CommitObject(h)
		if err != nil {
			return "", fmt.Errorf("reading commit %s: %w", shortRev(h.String()), err)
		}
		if trees[i], err = c.Tree(); err != nil {
			return "", fmt.Errorf("reading the tree of %s: %w", shortRev(h.String()), err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	changes, err := object.DiffTreeWithOptions(ctx, trees[0], trees[1], object.DefaultDiffTreeOptions)
	if err != nil {
		return "", fmt.Errorf("looking for renames of %s between %s and %s: %w", rel, shortRev(from.String()), shortRev(to.String()), err)
	}
	for _, ch := range changes {
		if ch.From.Name == rel && ch.To.Name != "" {
			return ch.To.Name, nil
		}
	}
	return "", &FileError{Path: rel, Rev: to.String()}
}

// MissingRevisionError says that a revision is not in the local repository
// and could not be fetched, and what to do about it.
type MissingRevisionError struct {
	Rev     string
	Root    string
	Remotes []string // "name (url)" of each remote tried
	Err     error    // the last fetch error; nil if every fetch worked but none had the revision
}

func (e *MissingRevisionError) Error() string {
	remote := "<remote>"
	if len(e.Remotes) > 0 {
		remote, _, _ = strings.Cut(e.Remotes[0], " ")
	}
	fix := fmt.Sprintf("fetch it yourself (git -C %s fetch %s %s), or push it from where the binary was built", e.Root, remote, e.Rev)
	switch {
	case len(e.Remotes) == 0:
		return fmt.Sprintf("revision %s is not in the repository at %s, which has no remotes to fetch it from: add the remote it was pushed to (git -C %s remote add origin URL) or fetch it by hand", shortRev(e.Rev), e.Root, e.Root)
	case e.Err != nil:
		return fmt.Sprintf("revision %s is not in the repository at %s and fetching it from %s failed: %v; %s", shortRev(e.Rev), e.Root, strings.Join(e.Remotes, ", "), e.Err, fix)
	}
	return fmt.Sprintf("revision %s is not in the repository at %s, and none of its remotes has it (fetched %s): %s", shortRev(e.Rev), e.Root, strings.Join(e.Remotes, ", "), fix)
}

func (e *MissingRevisionError) Unwrap() error { return e.Err }

// resolve returns the commit rev names, fetching it if it is missing. Lock
// should be held.
//
// A full hash found to be a commit names it for good, and is remembered:
// mapping a stream of hits resolves their revision once per hit, and
// go-git reads the refs and the commit from disk at each resolving.
func (r *Repo) resolve(rev string) (plumbing.Hash, error) {
	if h, ok := r.commits[rev]; ok {
		return h, nil
	}
	if h, err := r.repo.ResolveRevision(plumbing.Revision(rev)); err == nil {
		if _, err := r.repo.CommitObject(*h); err == nil {
			if plumbing.IsHash(rev) && strings.EqualFold(h.String(), rev) {
				r.commits[rev] = *h
			}
			return *h, nil
		}
	}
	if !plumbing.IsHash(rev) {
		return plumbing.ZeroHash, fmt.Errorf("revision %q is not a commit of the repository at %s", rev, r.root)
	}
	if f, ok := r.fetched[rev]; ok && time.Since(f.when) < fetchRetry {
		return plumbing.ZeroHash, f.err
	}
	err := r.fetch(rev)
	r.fetched[rev] = fetchResult{err, time.Now()}
	if err != nil {
		return plumbing.ZeroHash, err
	}
	r.commits[rev] = plumbing.NewHash(rev)
	return r.commits[rev], nil
}

// fetch fetches each remote in turn until the repository has rev: first its
// configured refspecs, then rev by hash (servers that allow it). Lock
// should be held.
func (r *Repo) fetch(rev string) error {
	hash := plumbing.NewHash(rev)
	has := func() bool { _, err := r.repo.CommitObject(hash); return err == nil }
	remotes, err := r.repo.Remotes()
	if err != nil {
		return fmt.Errorf("listing the remotes of %s: %w", r.root, err)
	}
	sort.Slice(remotes, func(i, j int) bool { return remotes[i].Config().Name < remotes[j].Config().Name })
	missing := &MissingRevisionError{Rev: rev, Root: r.root}
	ctx, cancel := context.WithTimeout(context.Background(), r.FetchTimeout)
	defer cancel()
	for _, rm := range remotes {
		cfg := rm.Config()
		missing.Remotes = append(missing.Remotes, fmt.Sprintf("%s (%s)", cfg.Name, strings.Join(cfg.URLs, ", ")))
		err := rm.FetchContext(ctx, &git.FetchOptions{Tags: git.AllTags})
		if err == nil || errors.Is(err, git.NoErrAlreadyUpToDate) {
			if has() {
				return nil
			}
			spec := config.RefSpec(fmt.Sprintf("%s:refs/riptrace/fetched/%s", rev, rev))
			err = rm.FetchContext(ctx, &git.FetchOptions{RefSpecs: []config.RefSpec{spec}})
			if err == nil && has() {
				return nil
			}
			if errors.Is(err, git.NoErrAlreadyUpToDate) || errors.Is(err, git.ErrExactSHA1NotSupported) {
				err = nil // the remote does not have it, or will not say
			}
		}
		if err != nil {
			missing.Err = fmt.Errorf("%s: %w", cfg.Name, err)
		}
	}
	return missing
}

func lineText(lines []string, n int) string {
	if n < 1 || n > len(lines) {
		return ""
	}
	return strings.TrimSpace(lines[n-1])
}
