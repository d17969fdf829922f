package storage_test

import (
	"bytes"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/cairn-backup/cairn/chunkstore/storage"
)

const packName = "1a2b3c4d5e6f708192a3b4c5d6e7f809.pack"

// writeFile writes a file as another program (an older cairn) would.
func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// files returns the regular files under root, relative to it.
func files(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// listNames returns the names List reports for kind, sorted.
func listNames(t *testing.T, s storage.Storage, kind storage.Kind) []string {
	t.Helper()
	var out []string
	err := s.List(t.Context(), kind, func(info storage.ObjectInfo) error {
		out = append(out, info.Name)
		return nil
	})
	if err != nil {
		t.Fatalf("List %s: %v", kind, err)
	}
	slices.Sort(out)
	return out
}

// putEveryKind writes one object of each kind, packs both ways.
func putEveryKind(t *testing.T, s storage.Storage) {
	t.Helper()
	ctx := t.Context()
	for _, o := range []struct {
		kind storage.Kind
		name string
	}{
		{storage.Config, "cairn.json"},
		{storage.Points, "web01@20261121T100000Z"},
		{storage.Policies, "daily"},
		{storage.Packs, "ff00.pack"},
	} {
		if err := s.Put(ctx, o.kind, o.name, []byte(o.name)); err != nil {
			t.Fatal(err)
		}
	}
	w, err := s.Create(ctx, storage.Packs, packName)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("pack bytes")); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestDirLayout(t *testing.T) {
	root := t.TempDir()
	d, err := storage.NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	putEveryKind(t, d)
	want := []string{
		"cairn.json",
		"packs/1a/" + packName,
		"packs/ff/ff00.pack",
		"points/web01@20261121T100000Z",
		"policies/daily",
	}
	if got := files(t, root); !slices.Equal(got, want) {
		t.Errorf("files in the vault = %q, want %q (and no temporaries)", got, want)
	}
	// A one-character pack name is its own fan-out directory.
	if err := d.Put(t.Context(), storage.Packs, "x", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "packs", "x", "x")); err != nil {
		t.Error(err)
	}
}

// TestDirModes checks the modes of what Dir creates under umasks that
// would grant more (0) or less (0277: not even the owner may write) than
// it means to.
func TestDirModes(t *testing.T) {
	for _, umask := range []int{0, 0o022, 0o277} {
		t.Run(fs.FileMode(umask).String(), func(t *testing.T) {
			old := syscall.Umask(umask) // process-wide: this test is not parallel
			defer syscall.Umask(old)
			root := t.TempDir()
			d, err := storage.NewDir(root)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			putEveryKind(t, d)
			n := 0
			err = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
				if err != nil || p == root {
					return err
				}
				info, err := e.Info()
				if err != nil {
					return err
				}
				want := fs.FileMode(0o600)
				if e.IsDir() {
					want = fs.ModeDir | 0o700
				}
				if info.Mode() != want {
					t.Errorf("%s: mode %v, want %v", p, info.Mode(), want)
				}
				n++
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if n != 10 { // 5 files; packs, packs/1a, packs/ff, points, policies
				t.Errorf("%d entries checked, want 10", n)
			}
		})
	}
}

// TestDirExistingVault reads a vault as cairn wrote it before this
// package, with what else lives in a vault directory around it.
func TestDirExistingVault(t *testing.T) {
	root := t.TempDir()
	pack := bytes.Repeat([]byte("blob"), 1000)
	writeFile(t, filepath.Join(root, "cairn.json"), []byte(`{"format":1}`))
	writeFile(t, filepath.Join(root, "cairn.json.tmp"), []byte("an interrupted init"))
	writeFile(t, filepath.Join(root, "index", "MANIFEST"), []byte("badger"))
	writeFile(t, filepath.Join(root, "packs", "1a", packName), pack)
	writeFile(t, filepath.Join(root, "packs", "1a", "1a00.pack.tmp"), []byte("an interrupted backup"))
	writeFile(t, filepath.Join(root, "packs", "ff", "1a11.pack"), []byte("in the wrong fan-out"))
	writeFile(t, filepath.Join(root, ".hidden"), nil)
	ln, err := net.Listen("unix", filepath.Join(root, "cairn.sock")) // a running daemon's socket
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := os.Symlink(filepath.Join(root, "cairn.json"), filepath.Join(root, "link.json")); err != nil {
		t.Fatal(err)
	}

	d, err := storage.NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got, want := listNames(t, d, storage.Config), []string{"cairn.json", "link.json"}; !slices.Equal(got, want) {
		t.Errorf("List Config = %q, want %q", got, want)
	}
	if got, want := listNames(t, d, storage.Packs), []string{packName}; !slices.Equal(got, want) {
		t.Errorf("List Packs = %q, want %q", got, want)
	}
	for _, kind := range []storage.Kind{storage.Points, storage.Policies} {
		if got := listNames(t, d, kind); len(got) != 0 {
			t.Errorf("List %s = %q, want none", kind, got)
		}
	}
	got, err := d.Get(t.Context(), storage.Config, "cairn.json")
	if err != nil || string(got) != `{"format":1}` {
		t.Errorf("Get cairn.json = %q, %v", got, err)
	}
	p := make([]byte, 8)
	if err := d.ReadAt(t.Context(), storage.Packs, packName, p, 4000-8); err != nil || string(p) != "blobblob" {
		t.Errorf("ReadAt the pack's end = %q, %v", p, err)
	}
	// What is not an object is absent, and neither deleted nor replaced.
	for _, name := range []string{"index", "packs", "cairn.sock"} {
		if _, err := d.Stat(t.Context(), storage.Config, name); !errors.Is(err, storage.ErrNotExist) {
			t.Errorf("Stat Config %s: %v, want ErrNotExist", name, err)
		}
		if _, err := d.Get(t.Context(), storage.Config, name); !errors.Is(err, storage.ErrNotExist) {
			t.Errorf("Get Config %s: %v, want ErrNotExist", name, err)
		}
		if err := d.Delete(t.Context(), storage.Config, name); err != nil {
			t.Errorf("Delete Config %s: %v, want nil", name, err)
		}
	}
	if err := d.Put(t.Context(), storage.Config, "index", []byte("x")); err == nil {
		t.Error("Put Config index over the index directory: no error")
	}
	if _, err := os.Stat(filepath.Join(root, "index", "MANIFEST")); err != nil {
		t.Errorf("the index directory was touched: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "cairn.sock")); err != nil {
		t.Errorf("the socket was touched: %v", err)
	}
}

func TestDirTemporaries(t *testing.T) {
	root := t.TempDir()
	d, err := storage.NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	putEveryKind(t, d)
	committed := files(t, root)

	// A crash: a writer that never commits nor aborts.
	w, err := d.Create(t.Context(), storage.Packs, "1a99.pack")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("half a pack")); err != nil {
		t.Fatal(err)
	}
	// Strays, as this package and older cairns leave them.
	writeFile(t, filepath.Join(root, "packs", "1a", "1a00.pack.tmp"), nil)
	writeFile(t, filepath.Join(root, "cairn.json.tmp"), nil)
	writeFile(t, filepath.Join(root, "points", "web01@20261121T110000Z.123456.tmp"), nil)
	// Not ours, whatever the suffix: kept.
	writeFile(t, filepath.Join(root, ".swap.tmp"), nil)
	writeFile(t, filepath.Join(root, "index", "000001.tmp"), nil)

	for _, kind := range storage.Kinds() {
		for _, name := range listNames(t, d, kind) {
			if strings.Contains(name, "tmp") || name == "1a99.pack" {
				t.Errorf("List %s reports temporary %s", kind, name)
			}
		}
	}
	if _, err := d.Stat(t.Context(), storage.Packs, "1a99.pack"); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Stat of an uncommitted pack: %v, want ErrNotExist", err)
	}

	n, err := d.CleanTemp(t.Context())
	if err != nil || n != 4 {
		t.Errorf("CleanTemp = %d, %v; want 4 removed", n, err)
	}
	want := slices.Concat(committed, []string{".swap.tmp", "index/000001.tmp"})
	slices.Sort(want)
	if got := files(t, root); !slices.Equal(got, want) {
		t.Errorf("files after CleanTemp = %q, want %q", got, want)
	}
	// The crashed writer's temporary is gone, so it cannot commit.
	if err := w.Commit(t.Context()); err == nil {
		t.Error("Commit of a writer whose temporary was removed: no error")
	}
	if _, err := d.Stat(t.Context(), storage.Packs, "1a99.pack"); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Stat after the failed Commit: %v, want ErrNotExist", err)
	}
	if n, err := d.CleanTemp(t.Context()); err != nil || n != 0 {
		t.Errorf("second CleanTemp = %d, %v; want 0", n, err)
	}
}

// TestDirCachedHandles checks that ReadAt's cached handle does not outlive
// the file it was opened on: on Linux an open handle would go on reading
// a deleted or replaced file.
func TestDirCachedHandles(t *testing.T) {
	d := newDir(t)
	ctx := t.Context()
	read := func() ([]byte, error) {
		p := make([]byte, 3)
		return p, d.ReadAt(ctx, storage.Packs, packName, p, 0)
	}
	if err := d.Put(ctx, storage.Packs, packName, []byte("old")); err != nil {
		t.Fatal(err)
	}
	if p, err := read(); err != nil || string(p) != "old" {
		t.Fatalf("ReadAt = %q, %v", p, err)
	}
	if err := d.Put(ctx, storage.Packs, packName, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if p, err := read(); err != nil || string(p) != "new" {
		t.Fatalf("ReadAt after Put replaced the pack = %q, %v", p, err)
	}
	w, err := d.Create(ctx, storage.Packs, packName)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("3rd"))
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if p, err := read(); err != nil || string(p) != "3rd" {
		t.Fatalf("ReadAt after Commit replaced the pack = %q, %v", p, err)
	}
	if err := d.Delete(ctx, storage.Packs, packName); err != nil {
		t.Fatal(err)
	}
	if _, err := read(); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("ReadAt after Delete: %v, want ErrNotExist", err)
	}
}

func TestDirErrorMessages(t *testing.T) {
	d := newDir(t)
	ctx := t.Context()
	_, err := d.Get(ctx, storage.Packs, packName)
	if got, want := err.Error(), "pack "+packName+": object does not exist"; got != want {
		t.Errorf("Get of a missing pack: %q, want %q", got, want)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%v does not wrap fs.ErrNotExist", err)
	}
	if err := d.Put(ctx, storage.Points, "p", make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	err = d.ReadAt(ctx, storage.Points, "p", make([]byte, 5), 8)
	if got, want := err.Error(), "point p: read 5 bytes at 8 of 10: unexpected EOF"; got != want {
		t.Errorf("ReadAt past the end: %q, want %q", got, want)
	}
	err = d.Put(ctx, storage.Policies, "a/b", nil)
	if got, want := err.Error(), `policy "a/b": invalid object name: byte 0x2f at 1 is not one of [A-Za-z0-9._@-]`; got != want {
		t.Errorf("Put of an invalid name: %q, want %q", got, want)
	}
}

func TestNewDir(t *testing.T) {
	root := filepath.Join(t.TempDir(), "vault")
	if _, err := storage.NewDir(root); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("NewDir of a missing directory: %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(root); err == nil {
		t.Error("NewDir created the missing vault directory")
	}
	writeFile(t, root, nil)
	if _, err := storage.NewDir(root); err == nil {
		t.Error("NewDir of a file: no error")
	}
}

// TestDirVaultGone checks that a vault directory removed under a running
// Dir is not silently made anew by the next write.
func TestDirVaultGone(t *testing.T) {
	root := filepath.Join(t.TempDir(), "vault")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	d, err := storage.NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := os.Remove(root); err != nil {
		t.Fatal(err)
	}
	if err := d.Put(t.Context(), storage.Packs, packName, nil); err == nil {
		t.Error("Put into a removed vault: no error")
	}
	if err := d.Put(t.Context(), storage.Config, "cairn.json", nil); err == nil {
		t.Error("Put Config into a removed vault: no error")
	}
	if _, err := os.Stat(root); err == nil {
		t.Error("the removed vault directory was made anew")
	}
	for _, kind := range storage.Kinds() {
		if err := d.List(t.Context(), kind, func(storage.ObjectInfo) error { return nil }); err == nil {
			t.Errorf("List %s of a removed vault: no error, as if it were empty", kind)
		}
	}
}

// TestDirKeepFree fills a small filesystem (a tmpfs of 8 MiB, of which an
// eighth is kept): writes that would eat into what is kept fail with
// ErrNoSpace and ENOSPC, store nothing, and succeed once there is room.
func TestDirKeepFree(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test mounts a tmpfs and needs root")
		}
		t.Skip("needs root to mount a tmpfs")
	}
	root := t.TempDir()
	if err := syscall.Mount("tmpfs", root, "tmpfs", 0, "size=8m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(root, syscall.MNT_DETACH) })
	d, err := storage.NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	d.KeepFree(64 << 20) // more than an eighth: an eighth, 1 MiB, is kept
	ctx := t.Context()
	big := bytes.Repeat([]byte("x"), 6<<20)
	if err := d.Put(ctx, storage.Points, "a@20261202T000000Z", big); err != nil {
		t.Fatalf("a write that leaves 2 MiB: %v", err)
	}
	more := bytes.Repeat([]byte("y"), 3<<19)
	err = d.Put(ctx, storage.Points, "a@20261202T000001Z", more)
	if !errors.Is(err, storage.ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "kept for the index") {
		t.Fatalf("a write into the space kept: %v", err)
	}
	if _, err := d.Stat(ctx, storage.Points, "a@20261202T000001Z"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("the failed write stored something: %v", err)
	}
	w, err := d.Create(ctx, storage.Packs, packName)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(more); !errors.Is(err, storage.ErrNoSpace) {
		t.Fatalf("a streamed write into the space kept: %v", err)
	}
	w.Abort()
	if err := d.Delete(ctx, storage.Points, "a@20261202T000000Z"); err != nil {
		t.Fatal(err)
	}
	if err := d.Put(ctx, storage.Points, "a@20261202T000001Z", more); err != nil {
		t.Fatalf("once there is room: %v", err)
	}
}
