package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A temporary file left by a killed run is removed by the next run for
// the same output; one a running writer holds locked, one just created,
// and those of other outputs are kept.
func TestReplaceFileRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-time.Minute)
	mk := func(name string, mtime time.Time) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stale := mk(".disk.img.cairn-111", old)
	fresh := mk(".disk.img.cairn-222", time.Now())
	other := mk(".other.img.cairn-333", old)
	busy := mk(".disk.img.cairn-444", old)
	f, err := os.Open(busy)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(dir, "disk.img")
	if err := replaceFile(out, func(f *os.File) error {
		// The file being written is locked against the same cleanup,
		// however old it looks.
		if err := os.Chtimes(f.Name(), old, old); err != nil {
			return err
		}
		removeStaleTemps(dir, "disk.img")
		if _, err := os.Stat(f.Name()); err != nil {
			t.Errorf("the file being written was removed: %v", err)
		}
		_, err := f.WriteString("complete")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(out); err != nil || string(b) != "complete" {
		t.Fatalf("output %q, %v", b, err)
	}
	for p, want := range map[string]bool{stale: false, fresh: true, other: true, busy: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", filepath.Base(p), err == nil, want)
		}
	}
}

// An output in the vault is refused by any spelling of its path: a
// symlink to the vault, ".." through one, a folder not made yet, the
// vault itself; outputs beside it pass, a symlink beside it to a
// similarly named folder too.
func TestCheckOutsideVault(t *testing.T) {
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	for _, d := range []string{vault, filepath.Join(vault, "packs"), filepath.Join(dir, "vault2"), filepath.Join(dir, "out")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(vault, "cairn.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"vlink": vault, "plink": filepath.Join(vault, "packs"), "olink": filepath.Join(dir, "out"),
		"out/tovault": "../vault/cairn.json"} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	for path, inside := range map[string]bool{
		vault:                           true,
		vault + "/":                     true,
		vault + "/cairn.json":           true,
		vault + "/packs/x.raw":          true,
		vault + "/new/deeper/x.raw":     true,
		dir + "/vlink/cairn.json":       true,
		dir + "/plink/../cairn.json":    true, // the kernel's "..": the vault's
		dir + "/plink/../new.raw":       true,
		dir + "/vlink/../vault/x.raw":   true,
		dir + "/out/../vault/x.raw":     true,
		dir + "/out/tovault":            true, // a symlink into the vault
		dir + "/x.raw":                  false,
		dir + "/vault2/x.raw":           false,
		dir + "/vaultx":                 false,
		dir + "/olink/x.raw":            false,
		dir + "/vlink/../out/x.raw":     false,
		dir + "/nowhere/at/all/x.raw":   false,
		"/dev/null":                     false,
		vault + "/../vault2/cairn.json": false,
	} {
		err := checkOutsideVault(vault, path)
		if (err != nil) != inside {
			t.Errorf("%s: %v, want inside %v", path, err, inside)
		}
	}
}
