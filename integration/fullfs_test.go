package integration

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestBackupFillsVaultFilesystem backs up onto a vault whose filesystem
// (a small tmpfs) fills up during the backup, at every stage: the space
// left before it starts goes from none to just enough, coarsely, then
// finely around the least that is enough, so that the filesystem fills
// while a pack is written, while it is committed, while the point's
// record or the index is written. Each backup that does not fit must
// fail with exit 1 and one line saying the storage is full, never with a
// crash (the index writes through memory maps: a full filesystem there is
// a SIGBUS); and with the filesystem still full, every committed point
// lists, verifies, restores to another filesystem byte for byte and
// reads through a FUSE mount. A backup that fits is committed whole. Once
// space is freed the next backup succeeds. The summary line counts the
// backups that met a full filesystem, by the write that failed.
func TestBackupFillsVaultFilesystem(t *testing.T) {
	needTool(t, "cmp")
	dir, small := t.TempDir(), smallFilesystem(t, "32m")
	vault := filepath.Join(small, "vault")
	filler := filepath.Join(small, "filler")
	mustCairn(t, vault, "init", "--chunk-size", "64K")

	rng := rand.New(rand.NewSource(15))
	n := 0
	// image writes a new disk of random bytes (nothing dedups), outside
	// the small filesystem.
	image := func(size int) string {
		n++
		p := filepath.Join(dir, fmt.Sprintf("disk%d.img", n))
		b := make([]byte, size)
		rng.Read(b)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	committed := map[string]string{} // point → the image it holds
	backup := func(img string) result {
		t.Helper()
		r := cairn(t, vault, "backup", "--name", "vm", img)
		if r.code == 0 {
			committed[strings.TrimSpace(r.stdout)] = img
		}
		return r
	}
	for i := 0; i < 2; i++ {
		if r := backup(image(2 << 20)); r.code != 0 {
			t.Fatalf("backup: %s", r.stderr)
		}
	}

	// fill leaves free bytes on the small filesystem.
	fill := func(free int64) {
		t.Helper()
		os.Remove(filler)
		var st unix.Statfs_t
		if err := unix.Statfs(small, &st); err != nil {
			t.Fatal(err)
		}
		avail := int64(st.Bavail) * st.Bsize
		fh, err := os.OpenFile(filler, os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		if avail-free > 0 {
			if err := unix.Fallocate(int(fh.Fd()), 0, 0, avail-free); err != nil {
				t.Fatalf("fill the filesystem: %v", err)
			}
		}
	}
	const size = 3 << 20
	stages := map[string]int{}
	tried, full, reads := 0, 0, 0
	// attempt backs up a new disk with free bytes left, and checks what
	// a failure must be and leave; it reports whether the backup fit.
	attempt := func(free int64, readAll bool) bool {
		t.Helper()
		fill(free)
		defer os.Remove(filler)
		tried++
		before := len(committed)
		r := backup(image(size))
		if r.code == 0 {
			return true
		}
		full++
		lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
		if r.code != 1 || len(lines) != 1 || !strings.HasPrefix(lines[0], "cairn: ") ||
			!strings.Contains(r.stderr, "full") {
			t.Errorf("backup with %d bytes free: exit %d, want 1 and one line saying the storage is full:\n%s", free, r.code, r.stderr)
		}
		stages[fullStage(r.stderr)]++
		t.Logf("%d bytes free: %s", free, strings.TrimSpace(r.stderr))
		if len(committed) != before {
			t.Errorf("backup with %d bytes free failed and committed a point", free)
		}
		// Still full: reads work.
		checkFullReads(t, vault, dir, committed, readAll)
		if readAll {
			reads++
		}
		return false
	}

	// Nearly full, by another program: the vault still reads (an open
	// that wrote the index there would crash on its memory maps).
	for _, free := range []int64{4 << 10, 64 << 10} {
		fill(free)
		checkFullReads(t, vault, dir, committed, false)
		os.Remove(filler)
	}

	// Coarse: from nothing free up, a MiB at a time.
	var lo, hi int64 = -1, -1
	for free := int64(0); free <= 16<<20; free += 1 << 20 {
		if attempt(free, free == 0) {
			hi = free
			break
		}
		lo = free
	}
	if hi < 0 || lo < 0 {
		t.Fatalf("no level between a full filesystem and 16 MiB free both fails and fits (last fail %d, fit %d)", lo, hi)
	}
	// Fine: every 64 KiB up from the last that failed; the last failure
	// met a full filesystem at the latest moment.
	last := lo
	for free := lo + 64<<10; free < hi; free += 64 << 10 {
		if attempt(free, false) {
			break
		}
		last = free
	}
	// Finer still, up to what fits.
	for free := last + 16<<10; free < last+64<<10; free += 16 << 10 {
		if attempt(free, false) {
			break
		}
	}
	attempt(last, true) // a late failure again, with every read checked

	// Room again: the next backup succeeds, and everything is whole.
	if r := backup(image(size)); r.code != 0 {
		t.Fatalf("backup once there is room: exit %d %s", r.code, r.stderr)
	}
	mustCairn(t, vault, "verify", "--data")
	checkFullReads(t, vault, dir, committed, true)
	var byStage []string
	for _, k := range mxSortedKeys(stages) {
		byStage = append(byStage, fmt.Sprintf("%s %d", k, stages[k]))
	}
	t.Logf("full filesystem: %d backups with the filesystem filling up, %d failed on one line (by the write that met it: %s), "+
		"%d committed; %d times every committed point listed, verified, restored and mounted on the full filesystem",
		tried, full, strings.Join(byStage, ", "), len(committed)-2, reads)
}

// fullStage names the write a backup's error says met the full
// filesystem.
func fullStage(stderr string) string {
	switch {
	case strings.Contains(stderr, "write pack"):
		return "pack write"
	case strings.Contains(stderr, "commit pack"):
		return "pack commit"
	case strings.Contains(stderr, "create pack"):
		return "pack create"
	case strings.Contains(stderr, ": commit "):
		return "point record"
	case strings.Contains(stderr, "index cannot be written"), strings.Contains(stderr, "index: "):
		return "index"
	}
	return "other"
}

// checkFullReads checks that the committed points of a vault on a full
// filesystem list and verify, and (all) that each restores to another
// filesystem and reads through a mount byte for byte.
func checkFullReads(t *testing.T, vault, dir string, committed map[string]string, all bool) {
	t.Helper()
	var names []string
	for p := range committed {
		names = append(names, p)
	}
	sort.Strings(names)
	if got := pointNames(t, mustCairn(t, vault, "points", "--json")); fmt.Sprint(got) != fmt.Sprint(names) {
		t.Errorf("points on the full filesystem: %v, want %v", got, names)
	}
	if r := cairn(t, vault, "verify"); r.code != 0 {
		t.Errorf("verify on the full filesystem: exit %d %s%s", r.code, r.stdout, r.stderr)
	}
	if !all {
		return
	}
	for _, p := range names {
		target := filepath.Join(dir, "restored.img")
		mustCairn(t, vault, "restore", "--force", p, target)
		sameFile(t, committed[p], target)
	}
	m := startMount(t, vault)
	for _, p := range names {
		res, id, _ := strings.Cut(p, "@")
		disk := strings.TrimSuffix(filepath.Base(committed[p]), ".img") // a disk is named after its image
		sameFile(t, committed[p], filepath.Join(m.dir, res, id, disk+".raw"))
	}
	m.stop(t)
}
