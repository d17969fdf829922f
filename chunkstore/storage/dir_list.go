package storage

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

func (d *Dir) List(ctx context.Context, kind Kind, fn func(ObjectInfo) error) error {
	if err := CheckKind(kind); err != nil {
		return err
	}
	if d.closed.Load() {
		return listError(kind, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return listError(kind, err)
	}
	if kind != Packs {
		return d.listDir(ctx, kind, d.dir(kind, ""), "", fn)
	}
	subs, err := d.readDir(filepath.Join(d.root, "packs"))
	if err != nil {
		return listError(kind, err)
	}
	for _, sub := range subs {
		if checkName(sub.Name()) != nil || len(sub.Name()) > 2 || !isDir(filepath.Join(d.root, "packs"), sub) {
			continue
		}
		if err := d.listDir(ctx, kind, filepath.Join(d.root, "packs", sub.Name()), sub.Name(), fn); err != nil {
			return err
		}
	}
	return nil
}

// listDir calls fn for the objects in dir. Packs pass their fan-out
// sub-directory's name: a pack in the wrong one is not found by Get, so
// it is not listed either.
func (d *Dir) listDir(ctx context.Context, kind Kind, dir, fan string, fn func(ObjectInfo) error) error {
	ents, err := d.readDir(dir)
	if err != nil {
		return listError(kind, err)
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return listError(kind, err)
		}
		name := e.Name()
		if checkName(name) != nil || (kind == Packs && fanout(name) != fan) {
			continue // a temporary, a hidden file, not ours
		}
		size, ok, err := regularSize(dir, e)
		if err != nil {
			return listError(kind, err)
		}
		if !ok {
			continue
		}
		if err := fn(ObjectInfo{Kind: kind, Name: name, Size: size}); err != nil {
			return err
		}
	}
	return nil
}

// readDir reads the entries of a directory of the vault. One that does
// not exist (no point was ever written) holds none, unless the vault
// directory itself is missing: a vault gone is no empty vault.
func (d *Dir) readDir(dir string) ([]fs.DirEntry, error) {
	ents, err := os.ReadDir(dir)
	if !isNotExist(err) {
		return ents, err
	}
	if st, serr := os.Stat(d.root); serr != nil || !st.IsDir() {
		return nil, fmt.Errorf("vault directory %s is missing: %w", d.root, fs.ErrNotExist)
	}
	return nil, nil
}

// regularSize returns the size of entry e of dir if it resolves to a
// regular file. One removed meanwhile is skipped.
func regularSize(dir string, e fs.DirEntry) (int64, bool, error) {
	var info fs.FileInfo
	var err error
	if e.Type()&fs.ModeSymlink != 0 {
		info, err = os.Stat(filepath.Join(dir, e.Name()))
	} else {
		info, err = e.Info()
	}
	if isNotExist(err) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return info.Size(), info.Mode().IsRegular(), nil
}

// isDir reports whether entry e of dir resolves to a directory.
func isDir(dir string, e fs.DirEntry) bool {
	if e.Type()&fs.ModeSymlink == 0 {
		return e.IsDir()
	}
	st, err := os.Stat(filepath.Join(dir, e.Name()))
	return err == nil && st.IsDir()
}
