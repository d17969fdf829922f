package snapshot

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// vaultLock is an exclusive flock on the vault's directory, held by the
// one process that has the vault open. It guards the vault whatever
// state its index is in (missing, or being rebuilt by a repair), where
// Badger's own lock guards only an index that exists.
type vaultLock struct{ f *os.File }

func lockVault(dir string) (*vaultLock, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return &vaultLock{f: f}, nil
}

func (l *vaultLock) release() {
	if l != nil && l.f != nil {
		l.f.Close()
	}
}
