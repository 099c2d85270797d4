package source

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"

	"github.com/go-git/go-git/v5/plumbing"
)

// A file's history (the blob of each commit that holds it) depends on the
// commits the references point to and on nothing else: it is kept in the
// user's cache directory, one file per checkout and path, so that the
// commands run one after another from a checkout (riptrace trace, again
// and again, on processes of a build without vcs.revision) search it once
// per change of the references. The search takes 80-150 ms for 835
// commits on this project, most of it go-git inflating every commit; read
// back, about 1 ms. A cache that cannot be read or written is no cache:
// the history is searched.

// refsState sums every reference, HEAD with them: a commit, a fetch, a
// new branch or tag changes it. Lock should be held.
func (r *Repo) refsState() (string, error) {
	iter, err := r.repo.References()
	if err != nil {
		return "", err
	}
	var lines []string
	err = iter.ForEach(func(ref *plumbing.Reference) error {
		lines = append(lines, ref.Name().String()+" "+ref.Hash().String()+" "+ref.Target().String())
		return nil
	})
	if err != nil {
		return "", err
	}
	if head, err := r.head(); err == nil {
		lines = append(lines, "HEAD "+head.String())
	}
	sort.Strings(lines)
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l + "\n"))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// historyFile is a history as kept in the cache.
type historyFile struct {
	Root     string      `json:"root"`
	Path     string      `json:"path"`
	Refs     string      `json:"refs"`
	Limit    int         `json:"limit"` // maxFingerprintCommits when it was searched
	Commits  int         `json:"commits"`
	Versions [][2]string `json:"versions"` // commit, blob
}

// historyPath is where the history of the checkout's path rel is kept, or
// "" where the user has no cache directory.
func (r *Repo) historyPath(rel string) string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	sum := sha256.Sum256([]byte(r.root + "\x00" + rel))
	return filepath.Join(dir, "riptrace", "history", hex.EncodeToString(sum[:12])+".json")
}

// cachedHistory returns the history kept for key, or nil.
func (r *Repo) cachedHistory(key historyKey) *fileHistory {
	path := r.historyPath(key.rel)
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var f historyFile
	if json.Unmarshal(b, &f) != nil || f.Root != r.root || f.Path != key.rel || f.Refs != key.refs || f.Limit != maxFingerprintCommits {
		return nil
	}
	h := &fileHistory{commits: f.Commits, versions: make([]fileVersion, len(f.Versions))}
	for i, v := range f.Versions {
		c, b := plumbing.NewHash(v[0]), plumbing.NewHash(v[1])
		if c.IsZero() || b.IsZero() {
			return nil
		}
		h.versions[i] = fileVersion{c, b}
	}
	return h
}

// keepHistory writes h to the cache as key's, replacing what was kept of
// the path: in a file of its own first, renamed into place, so that a
// command reading it meanwhile finds the old one or the new one whole.
func (r *Repo) keepHistory(key historyKey, h *fileHistory) {
	path := r.historyPath(key.rel)
	if path == "" {
		return
	}
	f := historyFile{Root: r.root, Path: key.rel, Refs: key.refs, Limit: maxFingerprintCommits, Commits: h.commits, Versions: make([][2]string, len(h.versions))}
	for i, v := range h.versions {
		f.Versions[i] = [2]string{v.commit.String(), v.blob.String()}
	}
	b, err := json.Marshal(&f)
	if err != nil {
		return
	}
	if os.MkdirAll(filepath.Dir(path), 0o700) != nil {
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".history-*")
	if err != nil {
		return
	}
	_, werr := tmp.Write(b)
	cerr := tmp.Close()
	if werr != nil || cerr != nil || os.Rename(tmp.Name(), path) != nil {
		os.Remove(tmp.Name())
	}
}
