package integration

import (
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// How the corruption matrix damages a copy of its vault.

// mxCorruption is one damage done to one file.
type mxCorruption struct {
	kind   string
	file   string          // relative to the vault
	what   string          // for the log
	hit    map[mxHash]bool // blobs that cannot be read any more
	record string          // the point whose record is damaged or gone
	pack   *mxPack
}

// flipBits flips one random bit at each offset.
func flipBits(t *testing.T, rng *rand.Rand, path string, offs []int64, keepTime bool) {
	t.Helper()
	unshare(t, path)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range offs {
		b := []byte{0}
		if _, err := fh.ReadAt(b, off); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 1 << rng.Intn(8)
		if _, err := fh.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	fh.Close()
	if keepTime {
		os.Chtimes(path, st.ModTime(), st.ModTime())
	}
}

// damagePack damages pack pk of the copy in vault as kind says.
func damagePack(t *testing.T, rng *rand.Rand, vault, kind string, pk *mxPack) *mxCorruption {
	t.Helper()
	c := &mxCorruption{kind: kind, file: pk.rel, hit: map[mxHash]bool{}, pack: pk}
	path := filepath.Join(vault, pk.rel)
	var offs []int64
	n := 1 + rng.Intn(3)
	switch kind {
	case "pack-header-flip":
		for i := 0; i < n; i++ {
			offs = append(offs, rng.Int63n(16))
		}
	case "pack-blobheader-flip":
		b := pk.blobs[rng.Intn(len(pk.blobs))]
		for i := 0; i < n; i++ {
			offs = append(offs, b.off+rng.Int63n(56))
		}
	case "pack-payload-flip":
		for i := 0; i < n; i++ {
			b := pk.blobs[rng.Intn(len(pk.blobs))]
			offs = append(offs, b.off+56+rng.Int63n(b.length-56))
		}
	case "pack-trailer-flip":
		for i := 0; i < n; i++ {
			offs = append(offs, pk.trailer+rng.Int63n(pk.size-pk.trailer))
		}
	case "pack-truncate":
		at := rng.Int63n(pk.size)
		if rng.Intn(4) == 0 {
			at = pk.trailer + rng.Int63n(pk.size-pk.trailer) // within the trailer
		}
		unshare(t, path)
		if err := os.Truncate(path, at); err != nil {
			t.Fatal(err)
		}
		for _, b := range pk.blobs {
			if b.off+b.length > at {
				c.hit[b.hash] = true
			}
		}
		c.what = fmt.Sprintf("truncated at %d of %d", at, pk.size)
		return c
	case "pack-delete":
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		for _, b := range pk.blobs {
			c.hit[b.hash] = true
		}
		c.what = "deleted"
		return c
	default:
		t.Fatalf("unknown kind %s", kind)
	}
	sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
	flipBits(t, rng, path, offs, false)
	for _, off := range offs {
		// The last 4 bytes of a blob header are padding: no check covers
		// them, and nothing reads them.
		if b := pk.blobAt(off); b != nil && (off < b.off+52 || off >= b.off+56) {
			c.hit[b.hash] = true
		}
	}
	c.what = fmt.Sprintf("bits flipped at %v", offs)
	return c
}

// damageFile flips bits in, truncates or deletes a small file.
func damageFile(t *testing.T, rng *rand.Rand, vault, rel, how string, keepTime bool) string {
	t.Helper()
	path := filepath.Join(vault, rel)
	size := fileSize(t, path)
	switch how {
	case "flip", "rot":
		if size == 0 {
			return "empty, left as it is"
		}
		var offs []int64
		for i := 1 + rng.Intn(3); i > 0; i-- {
			offs = append(offs, rng.Int63n(size))
		}
		flipBits(t, rng, path, offs, keepTime || how == "rot")
		return fmt.Sprintf("bits flipped at %v of %d", offs, size)
	case "truncate":
		at := rng.Int63n(max(size, 1))
		unshare(t, path)
		if err := os.Truncate(path, at); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("truncated at %d of %d", at, size)
	case "delete":
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		return "deleted"
	}
	t.Fatalf("unknown damage %s", how)
	return ""
}

func lastWord(kind string) string { return kind[strings.LastIndex(kind, "-")+1:] }

// copyVault copies the vault to a new directory, keeping modes and
// times (the index remembers the tables it has verified by size and
// time). Packs and point records, which cairn never changes in place,
// are hard links: unshare one before damaging it.
func (f *mxFixture) copyVault(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(f.tempDir(t), "vault")
	err := filepath.WalkDir(f.vault, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(f.vault, p)
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.MkdirAll(to, info.Mode().Perm()); err != nil {
				return err
			}
		case d.Type().IsRegular() && (strings.HasPrefix(rel, "packs/") || strings.HasPrefix(rel, "points/")):
			return os.Link(p, to)
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := os.WriteFile(to, b, info.Mode().Perm()); err != nil {
				return err
			}
			return os.Chtimes(to, info.ModTime(), info.ModTime())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// unshare gives path a copy of its own, in place of a hard link to the
// fixture's file, with the same time.
func unshare(t *testing.T, path string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".unshare"
	if err := os.WriteFile(tmp, b, st.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(tmp, st.ModTime(), st.ModTime())
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// scratchTmpfs mounts a tmpfs of size for the test, so that the many
// copies of a vault and the fsyncs of the commands cost no disk I/O
// (root is needed anyway, for FUSE).
func scratchTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount the tmpfs: %v", err)
		}
	})
	return dir
}

// tempDir is a new directory on the scratch tmpfs, removed when t ends.
func (f *mxFixture) tempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp(f.scratch, "t")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
