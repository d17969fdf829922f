package xfs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var logStartRE = regexp.MustCompile(`logstart = (\d+)`)

// logState asks xfs_logprint whether the log of img is clean.
func logState(t *testing.T, img string) string {
	t.Helper()
	out := runTool(t, "xfs_logprint", "-t", img)
	m := regexp.MustCompile(`state: <(\w+)>`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("xfs_logprint: %s", out)
	}
	return m[1]
}

// TestLog checks the log state the reader reports against
// xfs_logprint's: clean after mkfs and after xfs_db reformats the log at
// a later cycle; dirty once the last record is no longer an unmount
// record, as on a disk backed up while mounted (mounting is not possible
// here, so the test turns the unmount record into an ordinary one).
func TestLog(t *testing.T) {
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "file"), []byte("still here"))
	writeFile(t, xattrSpecPath(src), nil)
	for _, opts := range [][]string{nil, {"-m", "crc=0", "-b", "size=1024"}} {
		im := mkfs(t, src, "64m", opts...)
		if s := logState(t, im.path); s != "CLEAN" {
			t.Fatalf("fresh log %s", s)
		}
		if err := openImage(t, im.path).LogErr(); err != nil {
			t.Errorf("fresh log: %v", err)
		}

		cycled := filepath.Join(t.TempDir(), "cycled.img")
		img, err := os.ReadFile(im.path)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, cycled, img)
		runTool(t, "xfs_db", "-x", "-c", "logformat -c 7", cycled)
		if s := logState(t, cycled); s != "CLEAN" {
			t.Fatalf("reformatted log %s", s)
		}
		if err := openImage(t, cycled).LogErr(); err != nil {
			t.Errorf("reformatted log: %v", err)
		}

		m := logStartRE.FindStringSubmatch(xfsDB(t, im.path, "sb 0", "print logstart"))
		fsb, _ := strconv.ParseUint(m[1], 10, 64)
		at := byteOf(t, im.path, fsb)
		if be := img[at : at+4]; !bytes.Equal(be, []byte{0xFE, 0xED, 0xBA, 0xBE}) {
			t.Fatalf("no log record at the log start")
		}
		img[at+512+9] &^= 0x20 // the operation header's XLOG_UNMOUNT_TRANS
		dirty := filepath.Join(t.TempDir(), "dirty.img")
		writeFile(t, dirty, img)
		if s := logState(t, dirty); s != "DIRTY" {
			t.Fatalf("crafted log %s", s)
		}
		fsys := openImage(t, dirty)
		if err := fsys.LogErr(); !errors.Is(err, ErrLogDirty) {
			t.Errorf("dirty log: %v", err)
		}
		ino := lookupPath(t, fsys, "file")
		b := make([]byte, 20)
		if n, _ := fsys.ReadAt(ino, b, 0); string(b[:n]) != "still here" {
			t.Errorf("read %q", b[:n])
		}

		// A log the reader cannot make sense of still opens, and says so.
		clear(img[at : at+64<<10])
		fsys, err = Open(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			t.Fatal(err)
		}
		if err := fsys.LogErr(); err == nil || !strings.Contains(err.Error(), "log") {
			t.Errorf("zeroed log: %v", err)
		}
	}
}
