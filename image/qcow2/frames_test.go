package qcow2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
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
// 16-bit refcount limit: the packer moves on to the next cluster, and
// reports each host cluster once, in order, with its references.
func TestPackerRefcountLimit(t *testing.T) {
	p := newPacker(64 << 10)
	var refs []int
	p.filled = func(h int64, n int) {
		if h != int64(len(refs)) {
			t.Fatalf("host cluster %d reported after %d others", h, len(refs))
		}
		refs = append(refs, n)
	}
	for range 2 * maxRefcount {
		p.place(1)
	}
	if off := p.place(0); off%(64<<10) != 0 {
		t.Errorf("plain cluster at %d, not cluster aligned", off)
	}
	p.flush()
	if len(refs) < 3 {
		t.Fatalf("%d host clusters for %d one-byte clusters and a plain one", len(refs), 2*maxRefcount)
	}
	sum := 0
	for h, r := range refs {
		if r > maxRefcount {
			t.Fatalf("host cluster %d has %d references", h, r)
		}
		sum += r
	}
	if sum != 2*maxRefcount+1 {
		t.Errorf("%d references counted, want %d", sum, 2*maxRefcount+1)
	}
	if refs[len(refs)-1] != 1 {
		t.Errorf("the plain cluster has %d references", refs[len(refs)-1])
	}
}

// synthFrames is a disk of n clusters, each held as the same short
// "frame" (not real zstd: the tests below only count bytes). After
// shiftAfter FrameLen calls (0: never), frame shiftAt grows by a byte, as
// a source that changed between the passes of a stream would.
type synthFrames struct {
	n, c       int64
	frame      []byte
	calls      atomic.Int64
	shiftAfter int64
	shiftAt    int64
}

func (s *synthFrames) Size() int64                              { return s.n * s.c }
func (s *synthFrames) NextData(off int64) (int64, int64, error) { return off, s.Size(), nil }
func (s *synthFrames) ReadAt(p []byte, off int64) (int, error)  { return 0, io.ErrUnexpectedEOF }
func (s *synthFrames) FrameSize() int64                         { return s.c }
func (s *synthFrames) AppendFrame(dst []byte, i int64) ([]byte, error) {
	return append(dst, s.frame[:s.len(i)]...), nil
}

func (s *synthFrames) len(i int64) int {
	if s.shiftAfter > 0 && s.calls.Load() > s.shiftAfter && i == s.shiftAt {
		return len(s.frame)
	}
	return len(s.frame) - 1
}

func (s *synthFrames) FrameLen(i int64) (bool, int, error) {
	s.calls.Add(1)
	return true, s.len(i), nil
}

// A stream's memory does not grow with the number of data clusters: the
// layout is walked again rather than kept. Writing 16 times as many
// clusters allocates well under a byte more per added cluster (keeping
// each frame's length took 4 bytes, its host cluster's count 2).
func TestStreamMemoryBounded(t *testing.T) {
	alloc := func(n int64) uint64 {
		src := &synthFrames{n: n, c: 4096, frame: bytes.Repeat([]byte{7}, 101)}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		if _, err := Write(context.Background(), io.Discard, src, WriterOptions{Compression: "zstd", ClusterSize: 4096}, nil); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	small, large := alloc(1<<14), alloc(1<<18)
	perCluster := float64(int64(large)-int64(small)) / float64(1<<18-1<<14)
	t.Logf("allocated %d bytes for %d clusters, %d for %d: %.3f bytes per added cluster", small, 1<<14, large, 1<<18, perCluster)
	if perCluster > 0.5 {
		t.Errorf("%.3f bytes allocated per added data cluster, want a bound independent of the disk", perCluster)
	}
}

// A source whose frame lengths change between the passes of a stream (the
// tables written first would no longer match the data) fails the write;
// one that changes before the first pass reads the frame is consistent.
func TestStreamSourceChangedBetweenPasses(t *testing.T) {
	const n = 3000
	// FrameLen is called once per cluster in each of the three layout
	// passes, then by the workers for the data; the changed frame is the
	// last, so a change at the middle of a pass is seen from that pass on.
	for _, tc := range []struct {
		after int64
		fails bool
	}{{n / 2, false}, {n + n/2, true}, {2*n + n/2, true}, {3*n + n/2, true}} {
		src := &synthFrames{n: n, c: 4096, frame: bytes.Repeat([]byte{7}, 101), shiftAfter: tc.after, shiftAt: n - 1}
		_, err := Write(context.Background(), io.Discard, src, WriterOptions{Compression: "zstd", ClusterSize: 4096}, nil)
		switch {
		case tc.fails && err == nil:
			t.Errorf("frame length changed after %d calls: the write succeeded", tc.after)
		case tc.fails && !errors.Is(err, errLayoutChanged):
			t.Errorf("frame length changed after %d calls: %v, want %v", tc.after, err, errLayoutChanged)
		case !tc.fails && err != nil:
			t.Errorf("frame length changed before it was read: %v", err)
		}
	}
}
