package integration

import (
	"path/filepath"
	"strings"
	"testing"
)

type pointJSON struct {
	Point     string `json:"point"`
	Type      string `json:"type"`
	Size      int64  `json:"size"`
	Allocated int64  `json:"allocated"`
	Changed   int64  `json:"changed"`
	Added     int64  `json:"added"`
}

// TestBackupChangeRestoreDelete is the core promise: a full and an
// incremental point of a real ext4 disk both restore byte for byte, the
// increment costs about what changed, and deleting the full leaves the
// increment whole.
func TestBackupChangeRestoreDelete(t *testing.T) {
	t.Parallel() // long and self-contained: overlaps the other long tests
	needTool(t, "mkfs.ext4", "debugfs", "e2fsck", "cmp")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	img := makeExt4(t, dir, "256M", 80<<20)
	v1 := filepath.Join(dir, "v1.img")
	copyFile(t, img, v1)

	mustCairn(t, vault, "init")
	var p1 pointJSON
	mustJSON(t, mustCairn(t, vault, "backup", "--name", "web01", "--json", img), &p1)
	if p1.Type != "full" || p1.Size != 256<<20 || p1.Allocated < 60<<20 {
		t.Fatalf("full point: %+v", p1)
	}

	// Change about 2% of the disk: 4 scattered 1 MiB overwrites inside
	// the data, plus a new 1 MiB file written through the filesystem.
	scribble(t, img, 1, 4, 1<<20, 16<<20, 64<<20)
	newFile := filepath.Join(dir, "new.bin")
	scribble(t, createSized(t, newFile, 1<<20), 2, 1, 1<<20, 0, 1<<20+1)
	sh(t, "debugfs", "-w", "-R", "write "+newFile+" added.bin", img)
	v2 := filepath.Join(dir, "v2.img")
	copyFile(t, img, v2)

	var p2 pointJSON
	mustJSON(t, mustCairn(t, vault, "backup", "--name", "web01", "--json", img), &p2)
	if p2.Type != "incremental" {
		t.Fatalf("second point: %+v", p2)
	}
	const changedAtLeast = 5 << 20 // random bytes written
	if p2.Changed < changedAtLeast || p2.Changed > 4*changedAtLeast {
		t.Errorf("changed = %d, want about %d", p2.Changed, changedAtLeast)
	}
	// Random data does not compress: the increment costs about the
	// changed blocks, never a copy of the disk.
	if p2.Added < changedAtLeast*9/10 || p2.Added > p2.Changed+(1<<20) {
		t.Errorf("added = %d for %d changed bytes", p2.Added, p2.Changed)
	}
	if p2.Added > p1.Added/3 {
		t.Errorf("incremental added %d, full added %d", p2.Added, p1.Added)
	}

	r1, r2 := filepath.Join(dir, "r1.img"), filepath.Join(dir, "r2.img")
	mustCairn(t, vault, "restore", p1.Point, r1)
	mustCairn(t, vault, "restore", "web01@latest", r2)
	sameFile(t, v1, r1)
	sameFile(t, v2, r2)
	sh(t, "e2fsck", "-fn", r1)

	mustCairn(t, vault, "delete", p1.Point)
	mustCairn(t, vault, "restore", "--force", p2.Point, r2)
	sameFile(t, v2, r2)
	mustCairn(t, vault, "verify", "--data")

	var pts []pointJSON
	mustJSON(t, mustCairn(t, vault, "points", "--json"), &pts)
	if len(pts) != 1 || pts[0].Point != p2.Point {
		t.Fatalf("points after delete: %+v", pts)
	}
	var stats struct {
		Points     int     `json:"points"`
		DedupRatio float64 `json:"dedup_ratio"`
	}
	mustJSON(t, mustCairn(t, vault, "stats", "--json"), &stats)
	if stats.Points != 1 || stats.DedupRatio <= 0 {
		t.Errorf("stats: %+v", stats)
	}
	// Restored files are sparse: holes stay holes.
	if alloc := allocated(t, r2); alloc > fileSize(t, r2)/2 {
		t.Errorf("restored image allocates %d of %d bytes", alloc, fileSize(t, r2))
	}
}

// TestMultiDiskPoint backs up a server with two disks as one point.
func TestMultiDiskPoint(t *testing.T) {
	needTool(t, "mkfs.ext4", "cmp")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	sys := makeExt4(t, dir, "64M", 10<<20)
	data := filepath.Join(dir, "data.raw")
	createSized(t, data, 32<<20)
	scribble(t, data, 3, 8, 64<<10, 0, 32<<20)
	mustCairn(t, vault, "init", "--chunk-size", "64K", "--compression", "lz4")
	name := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "srv", "vda="+sys, data))
	out := mustCairn(t, vault, "show", name)
	for _, want := range []string{"vda", "data", "64.0 MiB", "32.0 MiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	r := cairn(t, vault, "restore", name, filepath.Join(dir, "x.img"))
	if r.code == 0 || !strings.Contains(r.stderr, "--disk") {
		t.Errorf("restore of a two-disk point to one file: %d %q", r.code, r.stderr)
	}
	outDir := filepath.Join(dir, "out")
	sh(t, "mkdir", outDir)
	mustCairn(t, vault, "restore", name, outDir)
	sameFile(t, sys, filepath.Join(outDir, "vda.raw"))
	sameFile(t, data, filepath.Join(outDir, "data.raw"))
	mustCairn(t, vault, "restore", "--disk", "data", name, filepath.Join(dir, "d.img"))
	sameFile(t, data, filepath.Join(dir, "d.img"))
}
