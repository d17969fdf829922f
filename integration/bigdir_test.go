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
// 12,000 entries, made hashed (htree) by e2fsck -D, and reads it through
// the mount and cairn ls. 12,000 entries fill some 60 leaf blocks under
// one index block, the same shape as 50,000 (whose leaves still fit one
// index block) at a tenth of the cost: mkfs.ext4 -d inserts directory
// entries in quadratic time (over three minutes for 50,000 here). It is
// left out of -short runs.
func TestGuestHugeDirectory(t *testing.T) {
	t.Parallel() // long and self-contained: overlaps the other long tests
	if testing.Short() {
		t.Skip("builds a 12,000-entry directory with mkfs.ext4 -d, which takes a while")
	}
	needTool(t, "mkfs.ext4", "e2fsck", "debugfs")
	const n = 12000
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
	for _, i := range []int{0, 5678, n - 1} {
		os.WriteFile(filepath.Join(tree, fmt.Sprintf("entry-%06d", i)), []byte(fmt.Sprintf("content of %d\n", i)), 0o644)
	}
	img := filepath.Join(dir, "big.img")
	sh(t, "mkfs.ext4", "-q", "-F", "-N", "16000", "-d", filepath.Join(dir, "tree"), img, "64M")
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
	if got := mustCairn(t, vault, "cat", point+":vda/big/entry-005678"); got != "content of 5678\n" {
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
	for _, i := range []int{0, 5678, n - 1} {
		b, err := os.ReadFile(filepath.Join(big, fmt.Sprintf("entry-%06d", i)))
		if err != nil || string(b) != fmt.Sprintf("content of %d\n", i) {
			t.Errorf("entry %d: %q %v", i, b, err)
		}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(big, "entry-011998"), &st); err != nil || st.Size != 0 || st.Mode&0o777 != 0o644 {
		t.Errorf("stat entry-011998: %+v %v", st, err)
	}
}
