package qcow2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// richImage makes, with qemu's own tools, a small qcow2 that uses every
// table the header can point at: L1 and L2 tables, refcount table and
// blocks, an internal snapshot with its own L1 table, a persistent
// bitmap, and compressed clusters. It returns the image's bytes.
func richImage(t *testing.T, dir string) []byte {
	t.Helper()
	img := filepath.Join(dir, "base.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", img, "4M")
	run(t, "qemu-io", "-c", "write -P 0xab 0 64k", "-c", "write -P 0x5c 1M 12k", "-c", "write -c -P 0x11 2M 64k", img)
	run(t, "qemu-img", "snapshot", "-c", "s1", img)
	run(t, "qemu-io", "-c", "write -P 0xcd 8k 8k", "-c", "write -P 0x22 3M 4k", img)
	run(t, "qemu-img", "bitmap", "--add", img, "b0")
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// qemuRefuses reports whether qemu-img finds the image corrupt: check
// reports corruptions or cannot finish (exit 1 or 2; 3 is leaks only),
// or convert fails.
func qemuRefuses(t *testing.T, path string) (bool, string) {
	t.Helper()
	out, err := exec.Command("qemu-img", "check", "-f", "qcow2", path).CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	if err != nil && ee.ExitCode() != 3 {
		return true, "qemu-img check: " + lastLine(out)
	}
	raw := filepath.Join(t.TempDir(), "out.raw")
	if out, err := exec.Command("qemu-img", "convert", "-f", "qcow2", "-O", "raw", path, raw).CombinedOutput(); err != nil {
		return true, "qemu-img convert: " + lastLine(out)
	}
	return false, ""
}

// lastLine picks the line of qemu-img's output that says what is wrong.
func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for _, l := range lines {
		if strings.HasPrefix(l, "ERROR") {
			return l
		}
	}
	return lines[len(lines)-1]
}

// cairnReadsAll opens the image and reads all of it, as a backup does;
// it returns the bytes or the first error.
func cairnReadsAll(path string) ([]byte, error) {
	im, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer im.Close()
	got := make([]byte, im.Size())
	for off := int64(0); off < im.Size(); off += 1 << 20 {
		if _, err := im.ReadAt(got[off:min(off+1<<20, im.Size())], off); err != nil && err != io.EOF {
			return nil, err
		}
	}
	for off := int64(0); off < im.Size(); {
		_, e, err := im.NextData(off)
		if err != nil {
			return nil, err
		}
		off = e
	}
	return got, nil
}

// TestRefusesWhatQemuRefuses damages each table of a real image in the
// ways a hostile or broken image would, and checks both ways round:
// whatever qemu-img refuses as corrupt cairn refuses with ErrCorrupt;
// whatever qemu-img reads, cairn reads to the same bytes. Each case must
// be one qemu refuses, so the test also proves the damage is real.
func TestRefusesWhatQemuRefuses(t *testing.T) {
	needTool(t, "qemu-img", "qemu-io")
	dir := t.TempDir()
	base := richImage(t, dir)
	be := binary.BigEndian
	C := uint64(1) << be.Uint32(base[20:])
	rt := be.Uint64(base[48:])   // refcount table offset
	sn := be.Uint64(base[64:])   // snapshot table offset
	l1 := be.Uint64(base[40:])   // active L1 table offset
	snL1 := be.Uint64(base[sn:]) // the snapshot's L1 table
	firstL2 := be.Uint64(base[l1:]) & offsetMask
	firstRB := be.Uint64(base[rt:])
	set32 := func(off uint64, v uint32) func([]byte) { return func(b []byte) { be.PutUint32(b[off:], v) } }
	set64 := func(off uint64, v uint64) func([]byte) { return func(b []byte) { be.PutUint64(b[off:], v) } }
	set16 := func(off uint64, v uint16) func([]byte) { return func(b []byte) { be.PutUint16(b[off:], v) } }
	flags := func(off uint64) uint64 { return be.Uint64(base[off:]) &^ offsetMask }
	end := uint64(len(base))
	cases := []struct {
		name   string
		damage func([]byte)
	}{
		{"header length past the cluster", set32(100, uint32(C)+8)},
		{"header length not a multiple of 8", set32(100, 106)},
		{"refcount table unaligned", set64(48, rt+512)},
		{"refcount table past the end", set64(48, end+16*C)},
		{"refcount table overlaps the header", set64(48, 0)},
		{"refcount table of no clusters", set32(56, 0)},
		{"refcount table too large", set32(56, 1<<30)},
		{"refcount block unaligned", set64(rt, firstRB+512)},
		{"refcount block past the end", set64(rt, end+64*C)},
		{"snapshot table unaligned", set64(64, sn+8)},
		{"snapshot table past the end", set64(64, end+16*C)},
		{"too many snapshots", set32(60, 70000)},
		{"snapshot L1 table unaligned", set64(sn, snL1+512)},
		{"snapshot L1 table past the end", set64(sn, end+16*C)},
		{"snapshot L1 table too large", set32(sn+8, 1<<30)},
		{"snapshot name runs past the table", set16(sn+14, 0xffff)},
		{"snapshot extra data too large", set32(sn+36, 0x7fffffff)},
		{"L1 entry points at an unaligned L2 table", set64(l1, (firstL2+512)|flags(l1))},
		{"L1 entry points past the end", set64(l1, (end+64*C)|flags(l1))},
		{"L2 table shares the refcount table's cluster", set64(l1, rt|flags(l1))},
		{"two L1 entries share one L2 table", set64(l1+8, be.Uint64(base[l1:]))},
		{"data cluster shared by two L2 entries", func(b []byte) {
			copy(b[firstL2+8:firstL2+16], b[firstL2:firstL2+8])
		}},
		{"COPIED flag missing on an active L2 table", set64(l1, firstL2)},
		{"L2 entry points at unaligned data", func(b []byte) {
			e := be.Uint64(b[firstL2:])
			be.PutUint64(b[firstL2:], (e&offsetMask+512)|e&^offsetMask)
		}},
		{"L2 entry points past the end", func(b []byte) {
			e := be.Uint64(b[firstL2:])
			be.PutUint64(b[firstL2:], (end+64*C)|e&^offsetMask)
		}},
		{"virtual size larger than the L1 table maps", set64(24, 1<<40)},
		{"file cut in the middle of the L2 tables", func(b []byte) {}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := bytes.Clone(base)
			c.damage(b)
			if c.name == "file cut in the middle of the L2 tables" {
				b = b[:firstL2+C/2]
			}
			p := filepath.Join(t.TempDir(), "bad.qcow2")
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			refused, why := qemuRefuses(t, p)
			if !refused {
				t.Fatalf("qemu-img reads this image: not a case of damage")
			}
			_, err := cairnReadsAll(p)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("qemu refuses (%s); cairn: %v", why, err)
			} else {
				t.Logf("qemu: %s; cairn: %v", why, err)
			}
		})
	}
	t.Run("undamaged", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "good.qcow2")
		if err := os.WriteFile(p, base, 0o644); err != nil {
			t.Fatal(err)
		}
		if refused, why := qemuRefuses(t, p); refused {
			t.Fatalf("qemu refuses the undamaged image: %s", why)
		}
		got, err := cairnReadsAll(p)
		if err != nil {
			t.Fatal(err)
		}
		if want := qemuRaw(t, p); !bytes.Equal(got, want) {
			t.Errorf("differs from qemu-img convert at byte %d", firstDiff(got, want))
		}
	})
}
