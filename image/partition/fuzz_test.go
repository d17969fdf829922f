package partition

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite testdata/fuzz/FuzzRead from outside tools")

// zeroTail is a disk whose first bytes are data and the rest zeros, so a
// small fuzz input can stand for a large disk.
type zeroTail struct {
	data []byte
	size int64
}

func (z zeroTail) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("negative offset")
	}
	if off >= z.size {
		return 0, io.EOF
	}
	n := len(p)
	if int64(n) > z.size-off {
		n = int(z.size - off)
	}
	clear(p[:n])
	if off < int64(len(z.data)) {
		copy(p[:n], z.data[off:])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func FuzzRead(f *testing.F) {
	f.Add([]byte{}, uint32(0))
	f.Fuzz(func(t *testing.T, data []byte, extraSectors uint32) {
		size := int64(len(data)) + int64(extraSectors%(1<<22))*512
		tab, err := Read(zeroTail{data, size}, size)
		if err != nil {
			return
		}
		switch tab.Kind {
		case KindNone, KindGPT, KindMBR:
		default:
			t.Fatalf("kind %q", tab.Kind)
		}
		for _, p := range tab.Partitions {
			if p.Number < 1 || p.Start < 0 || p.Size < 0 || (tab.Kind == KindGPT && p.Start+p.Size > size) {
				t.Fatalf("partition %+v on a disk of %d", p, size)
			}
		}
	})
}

// TestWriteFuzzSeeds refreshes the committed seed corpus when run with
// -update-seeds. Seeds keep only the leading non-zero part of a disk;
// zeroTail supplies the rest.
func TestWriteFuzzSeeds(t *testing.T) {
	if !*updateSeeds {
		t.Skip("run with -update-seeds to rewrite the corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzRead")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, disk []byte, size int64) {
		data := bytes.TrimRight(disk, "\x00")
		extra := (size - int64(len(data))) / 512
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nuint32(%d)\n", data, extra)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	head := func(p string, n int) []byte {
		f := openFile(t, p)
		defer f.Close()
		b := make([]byte, n)
		if _, err := io.ReadFull(f, b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	g := makeGPT(t)
	write("gpt-sgdisk", head(g, 34*512), 64*mib)
	patch(t, g, 512+24, []byte("garbage!"))
	write("gpt-damaged-primary", head(g, 34*512), 64*mib)
	write("mbr-logical", buildMBR(), 64*512)
	needTool(t, "mkfs.vfat")
	v := blankImage(t, 2*mib)
	run(t, "", "mkfs.vfat", "-F", "12", v)
	write("fat12-vbr", head(v, 512), 2*mib)
}

// buildMBR makes a tiny disk with one primary and an extended partition
// holding three logical partitions, packed a sector apart.
func buildMBR() []byte {
	img := make([]byte, 8*512)
	entry := func(sec []byte, i int, status, kind byte, start, count uint32) {
		e := sec[446+16*i:]
		e[0], e[4] = status, kind
		e[8], e[9], e[10], e[11] = byte(start), byte(start>>8), byte(start>>16), byte(start>>24)
		e[12], e[13], e[14], e[15] = byte(count), byte(count>>8), byte(count>>16), byte(count>>24)
		sec[510], sec[511] = 0x55, 0xAA
	}
	entry(img, 0, 0x80, 0x83, 1, 1)
	entry(img, 1, 0, 0x05, 2, 6)
	for i, ebr := range []int{2, 4, 6} {
		sec := img[ebr*512:]
		entry(sec, 0, 0, 0x83, 1, 1)
		if i < 2 {
			entry(sec, 1, 0, 0x05, uint32(ebr), 2)
		}
	}
	return img
}

func TestBuiltMBR(t *testing.T) {
	img := buildMBR()
	tab, err := Read(bytes.NewReader(img), int64(len(img)))
	if err != nil || len(tab.Partitions) != 5 || tab.Partitions[4].Number != 7 || tab.Partitions[4].Start != 7*512 {
		t.Fatalf("%+v, %v", tab, err)
	}
}
