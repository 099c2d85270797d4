package source

import (
	"bytes"
	"io"
	"os"
	"strings"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// How a repository's objects are read. go-git's defaults suit a repository
// opened for one operation; searching a file's history for a fingerprint
// (MatchFingerprint) reads a commit and a tree or more of every commit, and
// with them it took 250-350 ms for 835 commits on a VM where a system call
// is dear: go-git opened the pack file again for every object read, and
// decoded each pack index a few bytes per read(2) (18,000 reads in all).
// Pack files are kept open now (at most maxOpenPacks of them), and indexes
// read whole: 80-100 ms, most of it decoding commits.
const maxOpenPacks = 16

// readFast returns st's repository with pack files kept open and pack
// indexes read whole.
func readFast(st *filesystem.Storage) *filesystem.Storage {
	return filesystem.NewStorageWithOptions(wholeIndexes{st.Filesystem()}, cache.NewObjectLRUDefault(), filesystem.Options{MaxOpenDescriptors: maxOpenPacks})
}

// wholeIndexes is a repository's filesystem whose pack indexes open as
// their whole content in memory.
type wholeIndexes struct{ billy.Filesystem }

func (fs wholeIndexes) Open(name string) (billy.File, error) {
	f, err := fs.Filesystem.Open(name)
	if err != nil || !strings.HasSuffix(name, ".idx") {
		return f, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	return &memFile{name: f.Name(), Reader: bytes.NewReader(b)}, nil
}

// memFile is a read-only billy.File over bytes.
type memFile struct {
	name string
	*bytes.Reader
}

func (f *memFile) Name() string              { return f.name }
func (f *memFile) Write([]byte) (int, error) { return 0, os.ErrPermission }
func (f *memFile) Truncate(int64) error      { return os.ErrPermission }
func (f *memFile) Close() error              { return nil }
func (f *memFile) Lock() error               { return nil }
func (f *memFile) Unlock() error             { return nil }
