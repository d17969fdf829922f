package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestGuestHugeDirectory backs up an ext4 disk holding one directory of
// 50,000 entries, made hashed (htree) by e2fsck -D, and reads it through
// the mount and cairn ls. Building it is the slow part: mkfs.ext4 -d
// inserts directory entries in quadratic time (minutes for 50,000), so
// the test is left out of -short runs.
func TestGuestHugeDirectory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 50,000-entry directory with mkfs.ext4 -d, which takes minutes")
	}
	needTool(t, "mkfs.ext4", "e2fsck", "debugfs")
	const n = 50000
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree", "big")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := os.WriteFile(filepath.Join(tree, fmt.Sprintf("entry-%06d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Some entries carry data, to read back through the big directory.
	for _, i := range []int{0, 12345, n - 1} {
		os.WriteFile(filepath.Join(tree, fmt.Sprintf("entry-%06d", i)), []byte(fmt.Sprintf("content of %d\n", i)), 0o644)
	}
	img := filepath.Join(dir, "big.img")
	sh(t, "mkfs.ext4", "-q", "-F", "-N", "60000", "-d", filepath.Join(dir, "tree"), img, "256M")
	// mke2fs writes a linear directory; e2fsck -D rebuilds it hashed.
	if out, err := execCombined("e2fsck", "-fyD", img); err != nil && !strings.Contains(out, "MODIFIED") {
		t.Fatalf("e2fsck -fyD: %v\n%s", err, out)
	}
	if out := sh(t, "debugfs", "-R", "stat /big", img); !strings.Contains(out, "Flags: 0x81000") { // extents + hashed index
		t.Fatalf("/big is not a hashed directory:\n%s", out)
	}

	vault := filepath.Join(dir, "vault")
	mustCairn(t, vault, "init")
	point := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "bigdir", "vda="+img))
	if got := strings.Count(mustCairn(t, vault, "ls", point+":vda/big"), "\n"); got != n {
		t.Errorf("cairn ls lists %d entries, want %d", got, n)
	}
	if got := mustCairn(t, vault, "cat", point+":vda/big/entry-012345"); got != "content of 12345\n" {
		t.Errorf("cairn cat = %q", got)
	}

	m := startMount(t, vault)
	big := filepath.Join(m.dir, "bigdir", strings.TrimPrefix(point, "bigdir@"), "vda", "big")
	ents, err := os.ReadDir(big)
	if err != nil || len(ents) != n {
		t.Fatalf("readdir: %d entries, %v", len(ents), err)
	}
	for i, e := range ents {
		if want := fmt.Sprintf("entry-%06d", i); e.Name() != want {
			t.Fatalf("entry %d is %q, want %q", i, e.Name(), want)
		}
	}
	for _, i := range []int{0, 12345, n - 1} {
		b, err := os.ReadFile(filepath.Join(big, fmt.Sprintf("entry-%06d", i)))
		if err != nil || string(b) != fmt.Sprintf("content of %d\n", i) {
			t.Errorf("entry %d: %q %v", i, b, err)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(big, "entry-049998"), &st); err != nil || st.Size != 0 || st.Mode&0o777 != 0o644 {
		t.Errorf("stat entry-049998: %+v %v", st, err)
	}
}
