package integration

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type backupJSON struct {
	Point     string `json:"point"`
	Size      int64  `json:"size"`
	Allocated int64  `json:"allocated"`
	Changed   int64  `json:"changed"`
}

// backupRestore backs up src as resource name and returns the backup's
// JSON and the path of the restored disk.
func backupRestore(t *testing.T, vault, dir, name string, args ...string) (backupJSON, string) {
	t.Helper()
	var b backupJSON
	mustJSON(t, mustCairn(t, vault, append([]string{"backup", "--name", name, "--json"}, args...)...), &b)
	out := filepath.Join(dir, strings.ReplaceAll(b.Point, "@", "-")+".restored")
	mustCairn(t, vault, "restore", b.Point, out)
	return b, out
}

// guestRaw is what qemu reads from a qcow2 image: the reference a
// restored point must equal.
func guestRaw(t *testing.T, img string) string {
	t.Helper()
	out := img + ".qemu.raw"
	sh(t, "qemu-img", "convert", "-O", "raw", img, out)
	return out
}

// TestQcow2Sources backs up qcow2 images made by qemu-img in every form
// cairn reads, and checks each restored point equals qemu's view of the
// guest disk, and that the point holds the allocated data only.
func TestQcow2Sources(t *testing.T) {
	t.Parallel() // long and self-contained: overlaps the other long tests
	needTool(t, "qemu-img", "qemu-io")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	raw := makeExt4(t, dir, "48M", 12<<20)
	mustCairn(t, vault, "init")
	const block = 256 << 10
	q := func(name string) string { return filepath.Join(dir, name) }

	rawPoint, _ := backupRestore(t, vault, dir, "asraw", raw)

	sh(t, "qemu-img", "convert", "-c", "-O", "qcow2", raw, q("zlib.qcow2"))
	sh(t, "qemu-img", "convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd", raw, q("zstd.qcow2"))
	sh(t, "qemu-img", "convert", "-O", "qcow2", "-o", "compat=0.10", raw, q("v2.qcow2"))
	sh(t, "qemu-img", "convert", "-O", "qcow2", raw, q("base.qcow2"))
	sh(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", q("top.qcow2"))
	sh(t, "qemu-io", "-c", "write -P 0xab 1M 64k", q("top.qcow2"))
	sh(t, "qemu-img", "convert", "-O", "qcow2", raw, q("zero.qcow2"))
	sh(t, "qemu-io", "-c", "write -z 4M 8M", q("zero.qcow2")) // zero clusters over data
	// Content decides, not the name: a qcow2 called disk.img is qcow2.
	sh(t, "qemu-img", "convert", "-c", "-O", "qcow2", raw, q("named.img"))

	for _, c := range []struct{ name, file string }{
		{"zlib", "zlib.qcow2"}, {"zstd", "zstd.qcow2"}, {"v2", "v2.qcow2"}, {"backing", "top.qcow2"},
		{"zero", "zero.qcow2"}, {"named", "named.img"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, restored := backupRestore(t, vault, dir, c.name, q(c.file))
			sameFile(t, guestRaw(t, q(c.file)), restored)
			if b.Size != rawPoint.Size {
				t.Errorf("size %d, want the guest's %d", b.Size, rawPoint.Size)
			}
			// Allocated is the disk's non-zero blocks, whatever the container.
			want := rawPoint.Allocated
			switch c.name {
			case "zero":
				if b.Allocated > want-8<<20+2*block || b.Allocated >= want {
					t.Errorf("zeroed 8 MiB: allocated %d, raw source %d", b.Allocated, want)
				}
				return
			case "backing":
				if b.Allocated < want || b.Allocated > want+block {
					t.Errorf("allocated %d, want about %d", b.Allocated, want)
				}
				return
			}
			if b.Allocated != want {
				t.Errorf("allocated %d, want %d (the raw disk's)", b.Allocated, want)
			}
		})
	}

	// An incremental from a qcow2 stores only what changed in the guest.
	t.Run("incremental", func(t *testing.T) {
		sh(t, "qemu-io", "-c", "write -P 0xcd 20M 128k", q("top.qcow2"))
		b, restored := backupRestore(t, vault, dir, "backing", q("top.qcow2"))
		sameFile(t, guestRaw(t, q("top.qcow2")), restored)
		if b.Changed == 0 || b.Changed > block {
			t.Errorf("changed %d after writing 128 KiB inside one block", b.Changed)
		}
	})

	// Only allocated clusters are read: a 1 TiB guest with 64 KiB written
	// backs up in moments and stores one block.
	t.Run("sparse", func(t *testing.T) {
		sh(t, "qemu-img", "create", "-q", "-f", "qcow2", q("huge.qcow2"), "1T")
		sh(t, "qemu-io", "-c", "write -P 0x5a 300G 64k", q("huge.qcow2"))
		start := time.Now()
		var b backupJSON
		mustJSON(t, mustCairn(t, vault, "backup", "--name", "huge", "--json", q("huge.qcow2")), &b)
		if b.Size != 1<<40 || b.Allocated != block {
			t.Errorf("size %d allocated %d, want 1 TiB and one block", b.Size, b.Allocated)
		}
		if el := time.Since(start); el > 20*time.Second {
			t.Errorf("backup of a sparse 1 TiB qcow2 took %s: unallocated clusters were read?", el)
		}
		// Export the block back as qcow2: same map.
		out := q("huge.export.qcow2")
		mustCairn(t, vault, "export", b.Point, "--format", "qcow2", "-o", out)
		sh(t, "qemu-img", "check", out)
		if s := sh(t, "qemu-img", "compare", out, q("huge.qcow2")); !strings.Contains(s, "identical") {
			t.Errorf("compare: %s", s)
		}
	})

	// --source-format raw keeps the container's own bytes.
	t.Run("source-format-raw", func(t *testing.T) {
		_, restored := backupRestore(t, vault, dir, "container", "--source-format", "raw", q("zlib.qcow2"))
		sameFile(t, q("zlib.qcow2"), restored)
	})
}

// TestQcow2BadSources checks encrypted, truncated and corrupt qcow2
// images, and broken backing chains, get one clear error line, a non-zero
// exit and leave the vault as it was.
func TestQcow2BadSources(t *testing.T) {
	t.Parallel() // long and self-contained: overlaps the other long tests
	needTool(t, "qemu-img", "qemu-io")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	raw := makeExt4(t, dir, "24M", 6<<20)
	mustCairn(t, vault, "init")
	mustCairn(t, vault, "backup", "--name", "vm", raw)
	q := func(name string) string { return filepath.Join(dir, name) }

	// qemu-img times its LUKS key derivation and, on a busy machine,
	// sometimes gives up ("Unable to get accurate CPU usage"): try again.
	var out string
	var err error
	for try := 0; try < 5; try++ {
		if out, err = execCombined("qemu-img", "create", "-q", "-f", "qcow2", "--object", "secret,id=sec0,data=hunter2",
			"-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=100", q("luks.qcow2"), "16M"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("qemu-img create (luks): %v\n%s", err, out)
	}
	// Each codec and form, truncated to half: clusters point past the end.
	for _, f := range []struct{ name, opts string }{{"zlib", "-c"}, {"zstd", "-c -o compression_type=zstd"}, {"plain", ""}} {
		p := q("trunc-" + f.name + ".qcow2")
		sh(t, "sh", "-c", "qemu-img convert -O qcow2 "+f.opts+" '"+raw+"' '"+p+"'")
		if err := os.Truncate(p, fileSize(t, p)/2); err != nil {
			t.Fatal(err)
		}
	}
	sh(t, "qemu-img", "convert", "-O", "qcow2", raw, q("good.qcow2"))
	patch := func(name string, off int64, val uint64, width int) {
		b, err := os.ReadFile(q("good.qcow2"))
		if err != nil {
			t.Fatal(err)
		}
		if width == 8 {
			binary.BigEndian.PutUint64(b[off:], val)
		} else {
			binary.BigEndian.PutUint32(b[off:], uint32(val))
		}
		if err := os.WriteFile(q(name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	patch("l1-outside.qcow2", 40, 1<<40, 8) // l1_table_offset
	patch("version9.qcow2", 4, 9, 4)        // version
	patch("cluster-bits.qcow2", 20, 40, 4)  // cluster_bits
	patch("l1-huge.qcow2", 36, 1<<31, 4)    // l1_size
	// A backing chain whose base is gone, and one that loops.
	sh(t, "qemu-img", "convert", "-O", "qcow2", raw, q("gone-base.qcow2"))
	sh(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", "gone-base.qcow2", "-F", "qcow2", q("orphan.qcow2"))
	os.Remove(q("gone-base.qcow2"))
	sh(t, "qemu-img", "create", "-q", "-f", "qcow2", q("loop.qcow2"), "24M")
	sh(t, "qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "loop.qcow2", "-F", "qcow2", q("loop.qcow2"))

	// Damage inside the data, found only while reading: a compressed
	// cluster whose bytes are garbage (0xff opens no valid deflate block
	// nor zstd frame), and a zero flag in a version 2 image.
	for _, f := range []struct{ name, opts string }{{"zlib", "-c"}, {"zstd", "-c -o compression_type=zstd"}} {
		p := q("bad-data-" + f.name + ".qcow2")
		sh(t, "sh", "-c", "qemu-img convert -O qcow2 "+f.opts+" '"+raw+"' '"+p+"'")
		at, e := lastL2Entry(t, p)
		host := int64(e & (1<<54 - 1)) // compressed: offset bits 0..53 at 64 KiB clusters
		if e&(1<<62) == 0 {
			t.Fatalf("%s: last cluster is not compressed (entry %#x at %d)", p, e, at)
		}
		writeAt(t, p, host, bytes.Repeat([]byte{0xff}, 16))
	}
	sh(t, "qemu-img", "convert", "-O", "qcow2", "-o", "compat=0.10", raw, q("v2-zero-flag.qcow2"))
	at, e := lastL2Entry(t, q("v2-zero-flag.qcow2"))
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, e|1)
	writeAt(t, q("v2-zero-flag.qcow2"), at, b)

	before := vaultState(t, vault)
	for _, c := range []struct{ file, want string }{
		{"bad-data-zlib.qcow2", "decompress"},
		{"bad-data-zstd.qcow2", "decompress"},
		{"v2-zero-flag.qcow2", "zero flag"},
		{"luks.qcow2", "encrypted"},
		{"trunc-zlib.qcow2", "truncated"},
		{"trunc-zstd.qcow2", "truncated"},
		{"trunc-plain.qcow2", "truncated"},
		{"l1-outside.qcow2", "corrupt"},
		{"version9.qcow2", "version"},
		{"cluster-bits.qcow2", "cluster"},
		{"l1-huge.qcow2", "L1"},
		{"orphan.qcow2", "gone-base.qcow2"},
		{"loop.qcow2", "loop"},
	} {
		t.Run(c.file, func(t *testing.T) {
			r := cairn(t, vault, "backup", "--name", "vm", q(c.file))
			t.Log(strings.TrimSpace(r.stderr))
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			if r.code != 1 || len(lines) != 1 || !strings.HasPrefix(lines[0], "cairn: ") ||
				!strings.Contains(r.stderr, c.file) || !strings.Contains(r.stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want exit 1 and one line naming %s with %q", r.code, r.stderr, c.file, c.want)
			}
		})
	}
	if after := vaultState(t, vault); after != before {
		t.Errorf("bad sources changed the vault:\nbefore %s\nafter %s", before, after)
	}
	mustCairn(t, vault, "verify", "--data")
}

// lastL2Entry returns the file offset and value of the last allocated
// entry of the first L2 table of a qcow2 image with 64 KiB clusters.
func lastL2Entry(t *testing.T, path string) (int64, uint64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if binary.BigEndian.Uint32(b[20:]) != 16 {
		t.Fatalf("%s: cluster_bits %d, want 16", path, binary.BigEndian.Uint32(b[20:]))
	}
	l1 := binary.BigEndian.Uint64(b[40:])
	l2 := binary.BigEndian.Uint64(b[l1:]) & 0x00fffffffffffe00
	if l2 == 0 {
		t.Fatalf("%s: no L2 table", path)
	}
	for i := int64(8191); i >= 0; i-- {
		at := int64(l2) + 8*i
		if e := binary.BigEndian.Uint64(b[at:]); e&^(1<<63) != 0 {
			return at, e
		}
	}
	t.Fatalf("%s: empty L2 table", path)
	return 0, 0
}

func writeAt(t *testing.T, path string, off int64, p []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(p, off); err != nil {
		t.Fatal(err)
	}
}
