package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// replaceFile writes path through a temporary file beside it: fill
// writes the content, which is then synced and renamed over path. On any
// error the temporary file is removed, so nothing half-written ever
// carries the final name. The file is created with mode 0600.
//
// The temporary file is locked (flock) while it is written. One left by
// a killed run is unlocked, and the next run for the same path removes
// it, so a kill -9 does not leave a hidden copy of a disk behind for good.
func replaceFile(path string, fill func(f *os.File) error) error {
	dir, base := filepath.Dir(path), filepath.Base(path)
	removeStaleTemps(dir, base)
	f, err := os.CreateTemp(dir, tempPrefix(base)+"*")
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // name the output, not the temporary file
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	// Where the filesystem has no flock (some network ones), the file
	// stays unlocked, and removeStaleTemps, which cannot lock it either,
	// leaves it alone.
	syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if err := fill(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	ok = true
	return nil
}

// tempPrefix starts the names of the temporary files for an output named
// base.
func tempPrefix(base string) string { return "." + base + ".cairn-" }

// staleAge is how old an unlocked temporary file must be to be removed:
// one just created is locked a moment later.
const staleAge = 10 * time.Second

// removeStaleTemps removes the temporary files for base in dir that no
// running process holds locked. Failures are ignored: cleaning up is a
// courtesy, and the new file does not depend on it.
func removeStaleTemps(dir, base string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), tempPrefix(base)) {
			continue
		}
		if info, err := e.Info(); err != nil || time.Since(info.ModTime()) < staleAge {
			continue
		}
		p := filepath.Join(dir, e.Name())
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			os.Remove(p) // its writer is gone
		}
		f.Close()
	}
}

// checkOutsideVault refuses an output path that is the vault's
// directory or lies below it: a restore or export there could replace
// the vault's own files, its config or a pack, with a disk image. The
// path itself (when it exists) and its folder are taken both as the
// kernel resolves them (symlinks, then "..") and as they read once
// cleaned (replaceFile makes its temporary file there), and each is
// compared with the vault by identity, so no other spelling of the
// vault (a symlink, a second path to it) gets through.
func checkOutsideVault(vaultDir, path string) error {
	vfi, err := os.Stat(vaultDir)
	if err != nil {
		return nil // no vault there to harm
	}
	raw := "/"
	if i := strings.LastIndexByte(path, '/'); i > 0 {
		raw = path[:i]
	}
	for _, d := range []string{path, raw, filepath.Dir(path)} {
		// From the nearest folder that exists, resolved, up to "/".
		for {
			r, err := filepath.EvalSymlinks(d)
			if err == nil {
				d = r
				break
			}
			d = filepath.Dir(d)
		}
		for {
			if fi, err := os.Stat(d); err == nil && os.SameFile(fi, vfi) {
				return fmt.Errorf("%s: inside the vault %s: write it outside the vault", path, vaultDir)
			}
			up := filepath.Dir(d)
			if up == d {
				break
			}
			d = up
		}
	}
	return nil
}
