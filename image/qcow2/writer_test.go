package qcow2

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/image"
)

// rawSource is a raw file as an image.Source, holes found by scanning for
// zero clusters so the test does not depend on the filesystem.
type rawSource struct {
	b     []byte
	chunk int64
}

func (r *rawSource) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(r.b)) {
		return 0, io.EOF
	}
	n := copy(p, r.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
func (r *rawSource) Size() int64 { return int64(len(r.b)) }
func (r *rawSource) NextData(off int64) (int64, int64, error) {
	size := int64(len(r.b))
	isZero := func(o int64) bool {
		return bytes.Count(r.b[o:min(o+r.chunk, size)], []byte{0}) == int(min(r.chunk, size-o))
	}
	s := off / r.chunk * r.chunk
	for s < size && isZero(s) {
		s += r.chunk
	}
	if s >= size {
		return size, size, nil
	}
	e := s
	for e < size && !isZero(e) {
		e += r.chunk
	}
	return max(s, off), min(e, size), nil
}

func checkQemu(t *testing.T, img, raw string, size int64) {
	t.Helper()
	if out, err := exec.Command("qemu-img", "check", img).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img check: %v\n%s", err, out)
	}
	var info struct {
		VirtualSize int64 `json:"virtual-size"`
		Format      string
	}
	if err := json.Unmarshal(run(t, "qemu-img", "info", "--output=json", img), &info); err != nil {
		t.Fatal(err)
	}
	if info.VirtualSize != size || info.Format != "qcow2" {
		t.Fatalf("qemu-img info: %+v, want virtual size %d", info, size)
	}
	run(t, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, img)
}

func TestWrite(t *testing.T) {
	needTool(t, "qemu-img")
	dir := t.TempDir()
	size := int64(24 << 20)
	if testing.Short() {
		size = 6 << 20
	}
	srcPath := makeRaw(t, dir, size, 42)
	data, _ := os.ReadFile(srcPath)
	src := &rawSource{b: data, chunk: 4096}

	for _, comp := range []string{"zlib", "zstd", "none"} {
		for _, mode := range []string{"file", "pipe"} {
			t.Run(comp+"/"+mode, func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "out.qcow2")
				opt := WriterOptions{Compression: comp, Workers: 3}
				var last int64
				progress := func(d int64) {
					if d < last {
						t.Errorf("progress went back from %d to %d", last, d)
					}
					last = d
				}
				n := writeImage(t, out, mode, src, opt, progress)
				if st, _ := os.Stat(out); st.Size() != n {
					t.Fatalf("Write returned %d, file has %d bytes", n, st.Size())
				}
				if last != size {
					t.Errorf("last progress %d, want %d", last, size)
				}
				checkQemu(t, out, srcPath, size)
				im, err := Open(out)
				if err != nil {
					t.Fatal(err)
				}
				defer im.Close()
				checkImage(t, im, data)
			})
		}
	}
}

// writeImage writes src to path directly (mode "file") or through a pipe.
func writeImage(t *testing.T, path, mode string, src image.Source, opt WriterOptions, progress func(int64)) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if mode == "file" {
		n, err := Write(context.Background(), f, src, opt, progress)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(f, pr)
		copied <- err
	}()
	n, err := Write(context.Background(), pw, src, opt, progress)
	pw.Close()
	if cerr := <-copied; err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// An uncompressed image streams with its tables first and needs no spool
// file: with no usable temporary directory it still streams, while a
// compressed one fails with a clear error.
func TestStreamPlainNeedsNoSpool(t *testing.T) {
	needTool(t, "qemu-img")
	dir := t.TempDir()
	srcPath := makeRaw(t, dir, 9<<20+512, 7)
	data, _ := os.ReadFile(srcPath)
	src := &rawSource{b: data, chunk: 4096}
	t.Setenv("TMPDIR", filepath.Join(dir, "missing"))
	out := filepath.Join(dir, "plain.qcow2")
	writeImage(t, out, "pipe", src, WriterOptions{Compression: "none"}, nil)
	checkQemu(t, out, srcPath, int64(len(data)))
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	go io.Copy(io.Discard, pr)
	_, err = Write(context.Background(), pw, src, WriterOptions{Compression: "zlib"}, nil)
	pw.Close()
	if err == nil || !strings.Contains(err.Error(), "spool") {
		t.Errorf("compressed qcow2 to a pipe without a temporary directory: %v, want a spool error", err)
	}
}

// Small clusters make many L2 tables and refcount blocks, so the
// allocator's block rollover and table tail are exercised.
func TestWriteSmallClustersManyRefcountBlocks(t *testing.T) {
	needTool(t, "qemu-img")
	dir := t.TempDir()
	srcPath := makeRaw(t, dir, 20<<20+1000, 9) // not a multiple of 512
	data, _ := os.ReadFile(srcPath)
	src := &rawSource{b: data, chunk: 512}
	for _, comp := range []string{"none", "zlib"} {
		out := filepath.Join(dir, comp+".qcow2")
		writeImage(t, out, "pipe", src, WriterOptions{Compression: comp, ClusterSize: 4096}, nil)
		padded := filepath.Join(dir, "padded.raw")
		os.WriteFile(padded, append(bytes.Clone(data), make([]byte, 24)...), 0o644)
		checkQemu(t, out, padded, 20<<20+1024)
	}
}

func TestWriteFromQcow2Chain(t *testing.T) {
	needTool(t, "qemu-img", "qemu-io")
	dir := t.TempDir()
	srcPath := makeRaw(t, dir, 4<<20, 1)
	base := filepath.Join(dir, "base.qcow2")
	run(t, "qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", srcPath, base)
	top := filepath.Join(dir, "top.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top)
	run(t, "qemu-io", "-c", "write -P 0xab 1M 64k", "-c", "write -z 2M 128k", top)
	im, err := Open(top)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	out := filepath.Join(dir, "out.qcow2")
	f, _ := os.Create(out)
	if _, err := Write(context.Background(), f, im, WriterOptions{Compression: "zstd"}, nil); err != nil {
		t.Fatal(err)
	}
	f.Close()
	run(t, "qemu-img", "check", out)
	run(t, "qemu-img", "compare", "-F", "qcow2", top, out)
}

func TestWriteErrors(t *testing.T) {
	src := &rawSource{b: bytes.Repeat([]byte("x"), 1<<20), chunk: 4096}
	var buf bytes.Buffer
	if _, err := Write(context.Background(), &buf, src, WriterOptions{Compression: "lzma"}, nil); err == nil {
		t.Error("unknown compression accepted")
	}
	if _, err := Write(context.Background(), &buf, src, WriterOptions{ClusterSize: 3000}, nil); err == nil {
		t.Error("bad cluster size accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Write(ctx, &buf, src, WriterOptions{}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Write: %v", err)
	}
	// A source that fails mid-way.
	bad := &failingSource{rawSource: src, at: 300 << 10}
	if _, err := Write(context.Background(), &buf, bad, WriterOptions{}, nil); err == nil || !errors.Is(err, errBoom) {
		t.Errorf("failing source: %v", err)
	}
}

var errBoom = errors.New("boom")

type failingSource struct {
	*rawSource
	at int64
}

func (f *failingSource) ReadAt(p []byte, off int64) (int, error) {
	if off >= f.at {
		return 0, errBoom
	}
	return f.rawSource.ReadAt(p, off)
}

// fileSource is a raw file as an image.Source through the reader's own
// SEEK_DATA-based raw backing type.
func fileSource(t *testing.T, path string) *rawFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, _ := f.Stat()
	return &rawFile{f: f, size: st.Size()}
}

func TestWriteSizes(t *testing.T) {
	needTool(t, "qemu-img")
	for _, tc := range []struct {
		name string
		size int64
		data []int64 // offsets of 100-byte non-zero patches
	}{
		{"empty", 0, nil},
		{"odd size", 1000, []int64{900}},
		{"sparse 3G", 3<<30 + 4096, []int64{0, 1 << 30, 3<<30 + 3900, 512<<20 - 50}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			raw := filepath.Join(dir, "src.raw")
			f, _ := os.Create(raw)
			f.Truncate(tc.size)
			for _, off := range tc.data {
				f.WriteAt(bytes.Repeat([]byte{0xa5}, 100), off)
			}
			f.Close()
			out := filepath.Join(dir, "out.qcow2")
			o, _ := os.Create(out)
			if _, err := Write(context.Background(), o, fileSource(t, raw), WriterOptions{}, nil); err != nil {
				t.Fatal(err)
			}
			o.Close()
			want := (tc.size + 511) &^ 511
			if want != tc.size {
				os.Truncate(raw, want)
			}
			checkQemu(t, out, raw, want)
			im, err := Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer im.Close()
			for _, off := range tc.data {
				p := make([]byte, 102)
				if off == 0 {
					p[0] = 0
					im.ReadAt(p[1:], 0)
				} else {
					im.ReadAt(p, off-1)
				}
				if p[0] != 0 || p[1] != 0xa5 || p[100] != 0xa5 || (off+101 < want && p[101] != 0) {
					t.Errorf("patch at %d reads back as %x...", off, p[:4])
				}
			}
		})
	}
}
