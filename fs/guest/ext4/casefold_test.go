package ext4

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cairn-backup/cairn/fs/guest"
)

// casefoldNames are the names TestCasefold puts in a casefold directory:
// plain ASCII, one whose folding is longer (ß folds to ss), a ligature,
// a decomposed accent, and two that are not valid UTF-8.
var casefoldNames = []string{"Hello.txt", "straße", "ﬁle", "cafe\u0301", "bad\xffname", "tail\xc3"}

// CasefoldImage builds a casefold filesystem (mke2fs cannot: debugfs
// sets the directory flag and links the names) with the names in /cf,
// and the same in /plain, an ordinary directory.
func casefoldImage(t testing.TB) string {
	t.Helper()
	img := mkfs(t, "mkfs.ext4", t.TempDir(), "16M", "-b", "4096", "-O", "casefold")
	data := filepath.Join(t.TempDir(), "data")
	writeFile(t, data, []byte("x"))
	cmds := []string{"mkdir /cf", "sif /cf flags 0x40080000", "mkdir /plain"} // casefold | extents
	for _, n := range casefoldNames {
		cmds = append(cmds, "write "+data+" /cf/"+n, "write "+data+" /plain/"+n)
	}
	debugfsScript(t, img, cmds...)
	return img
}

// TestCasefold: in a casefold directory a name is found by its exact
// bytes first, then, when valid UTF-8, by its case-folded canonical
// form, as the kernel's generic_ci_match does; a name that is not valid
// UTF-8 is found by its exact bytes only. Outside such a directory
// names match exactly.
func TestCasefold(t *testing.T) {
	fsys := openImage(t, casefoldImage(t))
	cf, plain := lookupPath(t, fsys, "cf"), lookupPath(t, fsys, "plain")
	if got := dirNames(t, fsys, cf); !slices.Equal(got, sortedCopy(casefoldNames)) {
		t.Fatalf("/cf lists %q", got)
	}
	ino := map[string]uint64{}
	for _, n := range casefoldNames {
		i, err := fsys.Lookup(cf, n)
		if err != nil {
			t.Fatalf("exact Lookup %q: %v", n, err)
		}
		ino[n] = i
		if _, err := fsys.Lookup(plain, n); err != nil {
			t.Errorf("exact Lookup %q in /plain: %v", n, err)
		}
	}
	for query, want := range map[string]string{
		"HELLO.TXT": "Hello.txt", "hello.txt": "Hello.txt",
		"STRASSE": "straße", "strasse": "straße", "Straße": "straße",
		"FILE": "ﬁle", "file": "ﬁle",
		"CAF\u00c9": "cafe\u0301", "caf\u00e9": "cafe\u0301",
	} {
		got, err := fsys.Lookup(cf, query)
		if err != nil || got != ino[want] {
			t.Errorf("Lookup %q = %d, %v; want %q (%d)", query, got, err, want, ino[want])
		}
		if _, err := fsys.Lookup(plain, query); !errors.Is(err, guest.ErrNotFound) {
			t.Errorf("Lookup %q in /plain: %v, want not found", query, err)
		}
	}
	for _, query := range []string{"BAD\xffname", "bad\xffNAME", "TAIL\xc3", "bad\xfename"} {
		if got, err := fsys.Lookup(cf, query); !errors.Is(err, guest.ErrNotFound) {
			t.Errorf("Lookup %q = %d, %v; want not found", query, got, err)
		}
	}
}

func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
