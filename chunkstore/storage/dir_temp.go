package storage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CleanTemp removes the temporaries that writers left behind (a crash, a
// killed process) and returns how many it removed. Only call it while no
// writer is active, such as when a vault is opened under its lock: a
// temporary being written looks the same as an abandoned one.
func (d *Dir) CleanTemp(ctx context.Context) (int, error) {
	if d.closed.Load() {
		return 0, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("removing temporaries: %w", err)
	}
	dirs := []string{d.root, filepath.Join(d.root, "points"), filepath.Join(d.root, "policies")}
	packs := filepath.Join(d.root, "packs")
	subs, err := d.readDir(packs)
	if err != nil {
		return 0, fmt.Errorf("removing temporaries: %w", err)
	}
	for _, sub := range subs {
		if isDir(packs, sub) && checkName(sub.Name()) == nil {
			dirs = append(dirs, filepath.Join(packs, sub.Name()))
		}
	}
	removed := 0
	for _, dir := range dirs {
		n, err := d.cleanTempIn(ctx, dir)
		removed += n
		if err != nil {
			return removed, fmt.Errorf("removing temporaries: %w", err)
		}
	}
	return removed, nil
}

func (d *Dir) cleanTempIn(ctx context.Context, dir string) (int, error) {
	ents, err := d.readDir(dir)
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		if !isTemp(e.Name()) || !e.Type().IsRegular() {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); isNotExist(err) {
			continue
		} else if err != nil {
			return removed, err
		}
		removed++
	}
	return removed, nil
}

// isTemp reports whether a file name is a temporary: a valid object name
// with tmpSuffix appended, or with "." and digits and tmpSuffix. That
// covers this package's NAME.RANDOM.tmp and the NAME.tmp that cairn wrote
// before it, and nothing a user would keep in a vault directory by
// accident.
func isTemp(name string) bool {
	stem, ok := strings.CutSuffix(name, tmpSuffix)
	if !ok {
		return false
	}
	if checkName(stem) == nil {
		return true
	}
	i := strings.LastIndexByte(stem, '.')
	if i < 0 || i == len(stem)-1 || strings.Trim(stem[i+1:], "0123456789") != "" {
		return false
	}
	return checkName(stem[:i]) == nil
}
