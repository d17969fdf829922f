package volume

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// xfsImage builds a bare XFS volume with mkfs.xfs from a protofile.
func xfsImage(t *testing.T) string {
	t.Helper()
	needTool(t, "mkfs.xfs")
	dir := t.TempDir()
	host := filepath.Join(dir, "hostname")
	os.WriteFile(host, []byte("web01\n"), 0o644)
	proto := filepath.Join(dir, "proto")
	os.WriteFile(proto, []byte("x\n0 0\nd--755 0 0\netc d--755 0 0\nhostname ---644 0 0 "+host+
		"\n$\nlink l--777 0 0 etc/hostname\n$\n"), 0o644)
	img := filepath.Join(dir, "xfs.img")
	cmd := exec.Command("mkfs.xfs", "-q", "-p", proto, "-d", "file,name="+img+",size=32m,agcount=1")
	// mkfs.xfs takes volumes under 300 MB only under fstests' variables.
	cmd.Env = append(os.Environ(), "TEST_DIR=1", "TEST_DEV=1", "QA_CHECK_FS=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs: %v\n%s", err, out)
	}
	return img
}

func TestXFS(t *testing.T) {
	img := xfsImage(t)
	open := func() *Disk {
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		st, _ := f.Stat()
		d, err := Open(f, st.Size())
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := open()
	if !d.Bare || len(d.Volumes) != 1 || d.Volumes[0].Type() != "xfs" {
		t.Fatalf("bare %v, %d volumes, type %q", d.Bare, len(d.Volumes), d.Volumes[0].Type())
	}
	_, fsys, ino, err := d.Resolve("link", true)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 64)
	if n, _ := fsys.ReadAt(ino, b, 0); string(b[:n]) != "web01\n" {
		t.Errorf("link reads %q", b[:n])
	}
	if w := d.Volumes[0].TakeWarning(); w != nil {
		t.Errorf("clean log warns: %v", w)
	}

	// A log that needs recovery: the last record no longer unmounts.
	out, err := exec.Command("xfs_db", "-r", "-c", "sb 0", "-c", "print logstart blocksize", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	var logStart, bs int64
	for _, line := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(line, " = ")
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch k {
		case "logstart":
			logStart = n
		case "blocksize":
			bs = n
		}
	}
	w, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// One AG: the log's filesystem block is its linear block.
	w.WriteAt([]byte{0}, logStart*bs+512+9)
	w.Close()
	v := open().Volumes[0]
	if _, err := v.FS(); err != nil {
		t.Fatal(err)
	}
	if w := v.TakeWarning(); w == nil || !strings.Contains(w.Error(), "showing the filesystem as last checkpointed") {
		t.Errorf("first warning: %v", w)
	}
	if w := v.TakeWarning(); w != nil {
		t.Errorf("second warning: %v", w)
	}
}
