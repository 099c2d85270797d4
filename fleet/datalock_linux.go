package fleet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockDataDir takes an exclusive lock on dir for this process, writing its
// pid in the lock file, so that a second server on the same JetStream
// store is refused rather than sharing it (two servers writing one store
// corrupt it). The lock goes with the process: a server killed leaves no
// stale lock. Close the returned file to release it.
func lockDataDir(dir string) (*os.File, error) {
	// nats-server would make it; the lock comes first.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("making the data directory: %w", err)
	}
	path := filepath.Join(dir, "riptrace.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking the data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("locking the data directory %s: %w", dir, err)
		}
		inUse := ErrDataDirInUse{Dir: dir}
		if b, rerr := os.ReadFile(path); rerr == nil {
			inUse.Pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		return nil, inUse
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
