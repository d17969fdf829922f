package qcow2

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// frameSource holds a disk as a vault does: every whole frame-sized block
// that compresses is a zstd frame, the rest (incompressible blocks, the
// short last block) raw. ReadAt is counted: copying frames must not read
// guest bytes through it.
type frameSource struct {
	*rawSource
	fsize  int64
	frames map[int64][]byte
	reads  atomic.Int64
	bad    int64 // frame whose AppendFrame returns a byte too many; -1 none
}

func newFrameSource(t *testing.T, data []byte, fsize int64) *frameSource {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(false))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	s := &frameSource{rawSource: &rawSource{b: data, chunk: fsize}, fsize: fsize, frames: map[int64][]byte{}, bad: -1}
	for i := int64(0); (i+1)*fsize <= int64(len(data)); i++ {
		blk := data[i*fsize : (i+1)*fsize]
		if bytes.Count(blk, []byte{0}) == len(blk) {
			continue
		}
		if f := enc.EncodeAll(blk, nil); int64(len(f)) < fsize {
			s.frames[i] = f
		}
	}
	return s
}

func (s *frameSource) ReadAt(p []byte, off int64) (int, error) {
	s.reads.Add(1)
	return s.rawSource.ReadAt(p, off)
}

func (s *frameSource) FrameSize() int64 { return s.fsize }

func (s *frameSource) FrameLen(i int64) (bool, int, error) {
	f, ok := s.frames[i]
	return ok, len(f), nil
}

func (s *frameSource) AppendFrame(dst []byte, i int64) ([]byte, error) {
	if f, ok := s.frames[i]; ok {
		if i == s.bad {
			return append(append(dst, f...), 0), nil
		}
		return append(dst, f...), nil
	}
	off := i * s.fsize
	return append(dst, s.b[off:min(off+s.fsize, int64(len(s.b)))]...), nil
}

// zstd clusters of the source's frame size are its frames, copied: the
// image passes qemu-img check and compare, to a file and to a pipe, and no
// guest byte is read or compressed. Any other cluster size or a level
// compresses as usual.
func TestWriteCopiesFrames(t *testing.T) {
	needTool(t, "qemu-img")
	dir := t.TempDir()
	size := int64(12<<20 + 3000) // a short last block
	srcPath := makeRaw(t, dir, size, 11)
	data, _ := os.ReadFile(srcPath)
	padded := filepath.Join(dir, "padded.raw")
	if err := os.WriteFile(padded, append(data, make([]byte, 512-size%512)...), 0o644); err != nil {
		t.Fatal(err)
	}
	vsize := (size + 511) &^ 511
	const fsize = 256 << 10
	src := newFrameSource(t, data, fsize)
	if len(src.frames) < 10 || len(src.frames) == int(size/fsize) {
		t.Fatalf("%d frames of %d blocks: the test disk needs both kinds", len(src.frames), size/fsize)
	}
	for _, mode := range []string{"file", "pipe"} {
		t.Run(mode, func(t *testing.T) {
			src.reads.Store(0)
			out := filepath.Join(t.TempDir(), "frames.qcow2")
			t.Setenv("TMPDIR", filepath.Join(dir, "missing")) // a pipe must not spool
			writeImage(t, out, mode, src, WriterOptions{Compression: "zstd", ClusterSize: fsize}, nil)
			checkQemu(t, out, padded, vsize)
			if r := src.reads.Load(); r != 0 {
				t.Errorf("%d ReadAt calls: frames were not copied", r)
			}
			img, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			for i, f := range src.frames {
				if !strings.Contains(string(img), string(f)) {
					t.Fatalf("frame %d is not in the image as it is", i)
				}
			}
		})
	}
	for _, opt := range []WriterOptions{{Compression: "zstd", ClusterSize: fsize, Level: 3}, {Compression: "zstd"}} {
		src.reads.Store(0)
		out := filepath.Join(dir, "compressed.qcow2")
		writeImage(t, out, "file", src, opt, nil)
		checkQemu(t, out, padded, vsize)
		if src.reads.Load() == 0 {
			t.Errorf("%+v: frames copied, want the data compressed", opt)
		}
	}
}

// A frame whose length differs from the one announced, which the tables
// written ahead rely on, fails the write instead of making a bad image.
func TestWriteFrameLengthMismatch(t *testing.T) {
	data, _ := os.ReadFile(makeRaw(t, t.TempDir(), 4<<20, 5))
	src := newFrameSource(t, data, 64<<10)
	for i := range src.frames {
		src.bad = i
		break
	}
	for _, w := range []io.Writer{io.Discard, nil} {
		var err error
		if w == nil {
			f, ferr := os.Create(filepath.Join(t.TempDir(), "x.qcow2"))
			if ferr != nil {
				t.Fatal(ferr)
			}
			_, err = Write(context.Background(), f, src, WriterOptions{Compression: "zstd"}, nil)
			f.Close()
		} else {
			_, err = Write(context.Background(), w, src, WriterOptions{Compression: "zstd"}, nil)
		}
		if err == nil || !strings.Contains(err.Error(), "announced") {
			t.Errorf("mismatched frame length: %v, want an error", err)
		}
	}
}

// Many tiny compressed clusters in one host cluster stop short of the
// 16-bit refcount limit: the packer moves on to the next cluster.
func TestPackerRefcountLimit(t *testing.T) {
	p := newPacker(64<<10, true)
	for range 2 * maxRefcount {
		p.place(1)
	}
	if len(p.refs) < 2 {
		t.Fatalf("%d host clusters for %d one-byte clusters", len(p.refs), 2*maxRefcount)
	}
	for h, r := range p.refs {
		if r > maxRefcount {
			t.Fatalf("host cluster %d has %d references", h, r)
		}
	}
	// A packer that does not keep counts places the same way.
	q := newPacker(64<<10, false)
	for range 2 * maxRefcount {
		q.place(1)
	}
	if q.end != p.end {
		t.Errorf("counting packer ends at %d, the other at %d", p.end, q.end)
	}
	if off := p.place(0); off%(64<<10) != 0 {
		t.Errorf("plain cluster at %d, not cluster aligned", off)
	}
}
