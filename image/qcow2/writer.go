package qcow2

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"

	"github.com/cairn-backup/cairn/image"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// Default compression levels, chosen on 256 MiB of Go source against
// qemu-img 7.2 (zlib level 6 with a 4 KiB window, libzstd level 3):
// klauspost/compress flate level 5 gives a 7% smaller image for 28% of
// qemu's CPU time; its zstd default speed gives a 1% larger image for
// the same CPU time as libzstd, and both spread over every core while
// qemu-img compresses in order on one.
const (
	defaultFlateLevel = 5
	defaultZstdLevel  = zstd.SpeedDefault
)

// WriterOptions tune Write. The zero value writes zlib-compressed 64 KiB
// clusters using every CPU.
type WriterOptions struct {
	// Compression is "zlib" (default), "zstd" or "none".
	Compression string
	// Level is the codec level: zlib 1-9, zstd 1-22 (mapped onto the
	// encoder's four speeds). 0 is the default.
	Level int
	// ClusterSize in bytes, a power of two from 4096 to 2 MiB; 0 = 65536.
	ClusterSize int
	// Workers compressing in parallel; 0 = GOMAXPROCS.
	Workers int
}

// FrameSource is a Source that already holds its data as zstd frames of
// FrameSize guest bytes each, as a cairn vault keeps its blocks. When the
// compression is zstd at the default level and the cluster size is
// FrameSize, Write copies those frames into compressed clusters instead of
// compressing the data again, and lays out an image for a stream from
// their lengths before any data is read.
type FrameSource interface {
	image.Source
	FrameSize() int64
	// FrameLen reports, without reading data, whether guest bytes
	// [i*FrameSize, (i+1)*FrameSize) are held as one zstd frame, and its
	// length. A frame never covers a partial last cluster.
	FrameLen(i int64) (zstd bool, n int, err error)
	// AppendFrame appends frame i to dst: the zstd frame when FrameLen
	// says so, otherwise the guest bytes themselves (to the source's end).
	AppendFrame(dst []byte, i int64) ([]byte, error)
}

// compressor compresses one cluster into dst, reusing its storage. Each
// worker owns one.
type compressor func(dst, src []byte) ([]byte, error)

func newCompressors(opt WriterOptions, n int) ([]compressor, func(), error) {
	cs := make([]compressor, n)
	switch opt.Compression {
	case "", "zlib":
		level := opt.Level
		if level == 0 {
			level = defaultFlateLevel
		}
		if level < 1 || level > 9 {
			return nil, nil, fmt.Errorf("qcow2: zlib level %d outside 1..9", level)
		}
		for i := range cs {
			var buf bytes.Buffer
			fw, err := flate.NewWriter(&buf, level)
			if err != nil {
				return nil, nil, fmt.Errorf("qcow2: %w", err)
			}
			// Raw deflate without a zlib header, as qemu writes.
			cs[i] = func(dst, src []byte) ([]byte, error) {
				buf = *bytes.NewBuffer(dst[:0])
				fw.Reset(&buf)
				if _, err := fw.Write(src); err != nil {
					return nil, err
				}
				err := fw.Close()
				return buf.Bytes(), err
			}
		}
		return cs, func() {}, nil
	case "zstd":
		level := defaultZstdLevel
		if opt.Level != 0 {
			level = zstd.EncoderLevelFromZstd(opt.Level)
		}
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(n),
			zstd.WithEncoderCRC(false), zstd.WithLowerEncoderMem(true), zstd.WithZeroFrames(true))
		if err != nil {
			return nil, nil, fmt.Errorf("qcow2: %w", err)
		}
		for i := range cs {
			cs[i] = func(dst, src []byte) ([]byte, error) { return enc.EncodeAll(src, dst[:0]), nil }
		}
		return cs, func() { enc.Close() }, nil
	case "none":
		return nil, func() {}, nil
	}
	return nil, nil, fmt.Errorf("qcow2: unknown compression %q (zlib, zstd or none)", opt.Compression)
}

// job is one guest cluster on its way through the workers.
type job struct {
	gc    int64
	raw   []byte
	out   []byte
	zero  bool
	plain bool
	err   error
	done  chan struct{}
}

// Write writes a qcow2 v3 image of src to w and returns the bytes written.
// Clusters outside src's data ranges, and clusters that read all zero, stay
// unallocated. The virtual size is src.Size() rounded up to 512 bytes.
//
// When w is a file positioned at its start (an io.WriterAt and io.Seeker
// whose offset is 0), the body is written in place and the header last.
// Otherwise (a pipe, stdout) an image whose cluster sizes are known before
// any data is read (uncompressed, or zstd frames copied from a
// FrameSource) is streamed with its tables first (streamTablesFirst), and
// one compressed here, whose table entries depend on compressed sizes, has
// its body spooled to a temporary file in os.TempDir(), which needs room
// for the whole image, and then streamed after the header.
//
// progress, if not nil, is called from the calling goroutine with the
// guest offset reached.
func Write(ctx context.Context, w io.Writer, src image.Source, opt WriterOptions, progress func(done int64)) (int64, error) {
	csize := int64(opt.ClusterSize)
	if csize == 0 {
		csize = 65536
	}
	if csize < 4096 || csize > 1<<maxClusterBits || csize&(csize-1) != 0 {
		return 0, fmt.Errorf("qcow2: cluster size %d is not a power of two from 4096 to 2 MiB", csize)
	}
	var cbits uint
	for 1<<cbits < csize {
		cbits++
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	comps, closeComps, err := newCompressors(opt, workers)
	if err != nil {
		return 0, err
	}
	defer closeComps()

	vsize := (src.Size() + 511) &^ 511
	l2Span := csize / 8 * csize
	l1Size := (vsize + l2Span - 1) / l2Span
	if l1Size*8 > maxL1Bytes {
		return 0, fmt.Errorf("qcow2: virtual size %d too large for cluster size %d", vsize, csize)
	}

	// Where the body goes.
	type fileLike interface {
		io.WriterAt
		io.Seeker
	}
	var body io.Writer
	var spool *os.File
	wf, inPlace := w.(fileLike)
	if inPlace {
		pos, err := wf.Seek(0, io.SeekCurrent)
		inPlace = err == nil && pos == 0
	}
	zeros := make([]byte, csize)
	fill := func(ctx context.Context, j *job, worker int) error {
		return compressJob(ctx, src, j, csize, zeros, comps, worker)
	}
	frames, _ := src.(FrameSource)
	if frames != nil && opt.Compression == "zstd" && opt.Level == 0 && frames.FrameSize() == csize {
		fill = func(ctx context.Context, j *job, _ int) error { return frameJob(ctx, frames, j, csize) }
	} else {
		frames = nil
	}
	if !inPlace && (opt.Compression == "none" || frames != nil) {
		return streamTablesFirst(ctx, w, src, frames, cbits, vsize, l1Size, workers, fill, progress)
	}
	if inPlace {
		body = io.NewOffsetWriter(wf, csize)
	} else {
		spool, err = os.CreateTemp("", "cairn-qcow2-*")
		if err != nil {
			return 0, fmt.Errorf("qcow2: spool file for streaming: %w", err)
		}
		defer func() {
			spool.Close()
			os.Remove(spool.Name())
		}()
		body = spool
	}
	bw := bufio.NewWriterSize(body, 1<<20)
	a := newAllocator(bw, cbits, l1Size)

	if err := pump(ctx, src, csize, workers, fill, a.add, progress); err != nil {
		return 0, err
	}
	l1Off, rtOff, rtClusters, err := a.finish()
	if err != nil {
		return 0, fmt.Errorf("qcow2: write: %w", err)
	}
	hdr := makeHeader(opt.Compression == "zstd", cbits, vsize, l1Size, l1Off, rtOff, rtClusters)
	total := a.pos

	if inPlace {
		if _, err := wf.WriteAt(hdr, 0); err != nil {
			return 0, fmt.Errorf("qcow2: write header: %w", err)
		}
		if _, err := wf.Seek(total, io.SeekStart); err != nil {
			return 0, fmt.Errorf("qcow2: %w", err)
		}
		// A reused file may hold stale bytes past the new image.
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() > total {
				if err := f.Truncate(total); err != nil {
					return 0, fmt.Errorf("qcow2: %w", err)
				}
			}
		}
		return total, nil
	}
	n, err := w.Write(hdr)
	if err != nil {
		return int64(n), fmt.Errorf("qcow2: write header: %w", err)
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return int64(n), fmt.Errorf("qcow2: spool: %w", err)
	}
	m, err := io.CopyBuffer(w, spool, make([]byte, 1<<20))
	if err == nil && int64(n)+m != total {
		err = fmt.Errorf("spool holds %d bytes, want %d", m, total-int64(n))
	}
	if err != nil {
		return int64(n) + m, fmt.Errorf("qcow2: write: %w", err)
	}
	return total, nil
}

// makeHeader returns the header cluster.
func makeHeader(zstd bool, cbits uint, vsize, l1Size, l1Off, rtOff, rtClusters int64) []byte {
	h := make([]byte, 1<<cbits)
	be := binary.BigEndian
	be.PutUint32(h[0:], magic)
	be.PutUint32(h[4:], 3)
	be.PutUint32(h[20:], uint32(cbits))
	be.PutUint64(h[24:], uint64(vsize))
	be.PutUint32(h[36:], uint32(l1Size))
	be.PutUint64(h[40:], uint64(l1Off))
	be.PutUint64(h[48:], uint64(rtOff))
	be.PutUint32(h[56:], uint32(rtClusters))
	if zstd {
		be.PutUint64(h[72:], incCompression)
		h[104] = compressionZstd
	}
	be.PutUint32(h[96:], 4) // 16-bit refcounts
	be.PutUint32(h[100:], 112)
	// Bytes 112..119 stay zero: the end of header extensions.
	return h
}

// fillFunc reads (and compresses) the cluster of job j; each worker passes
// its own number.
type fillFunc func(ctx context.Context, j *job, worker int) error

// pump reads, compresses and stores every data cluster of src in guest
// order. Workers fill jobs in parallel; a window of jobs bounds memory and
// add takes them in order.
func pump(ctx context.Context, src image.Source, csize int64, workers int, fill fillFunc, add func(*job) error, progress func(int64)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	window := 4 * workers
	order := make(chan *job, window)
	work := make(chan *job, window)
	free := make(chan *job, window+workers+1)
	for range cap(free) {
		free <- &job{raw: make([]byte, csize), out: make([]byte, 0, csize+csize/8), done: make(chan struct{}, 1)}
	}
	size := src.Size()
	var prodErr error
	go func() {
		defer close(order)
		defer close(work)
		prodErr = forEachDataCluster(src, csize, func(gc int64) error {
			var j *job
			select {
			case j = <-free:
			case <-ctx.Done():
				return ctx.Err()
			}
			j.gc, j.err = gc, nil
			order <- j
			work <- j
			return nil
		})
	}()

	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				j.err = fill(ctx, j, i)
				j.done <- struct{}{}
			}
		}()
	}
	defer wg.Wait()

	var err error
	for j := range order {
		<-j.done
		if err == nil {
			err = j.err
			if err == nil {
				if err = add(j); err != nil {
					err = fmt.Errorf("qcow2: write: %w", err)
				}
			}
			if err != nil {
				cancel()
			} else if progress != nil {
				progress(min((j.gc+1)*csize, size))
			}
		}
		free <- j
	}
	if err == nil {
		err = prodErr
	}
	if err == nil {
		err = ctx.Err()
	}
	if err == nil && progress != nil {
		progress(size)
	}
	return err
}

func compressJob(ctx context.Context, src image.Source, j *job, csize int64, zeros []byte, comps []compressor, worker int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	off := j.gc * csize
	n := min(csize, src.Size()-off)
	got, err := src.ReadAt(j.raw[:n], off)
	if int64(got) != n {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("qcow2: read source at offset %d: %w", off, err)
	}
	clear(j.raw[n:])
	j.zero = bytes.Equal(j.raw, zeros)
	j.plain = false
	if j.zero {
		return nil
	}
	if comps == nil {
		j.plain = true
		return nil
	}
	out, err := comps[worker](j.out, j.raw)
	if err != nil {
		return fmt.Errorf("qcow2: compress: %w", err)
	}
	// Keep the grown buffer for the next cluster.
	j.out = out[:0]
	if int64(len(out)) >= csize {
		j.plain = true
	} else {
		j.out = out
	}
	return nil
}

// frameLen returns the length of guest cluster gc's zstd frame in src,
// checked to be one a compressed cluster can hold, or 0 when the cluster
// is not held as a frame (it is then stored plain).
func frameLen(src FrameSource, gc, csize int64) (int, error) {
	off := gc * csize
	zst, n, err := src.FrameLen(gc)
	if err != nil {
		return 0, fmt.Errorf("qcow2: read source at offset %d: %w", off, err)
	}
	if !zst {
		return 0, nil
	}
	if off+csize > src.Size() || n <= 0 || int64(n) >= 2*csize {
		return 0, fmt.Errorf("qcow2: source frame at offset %d: %d bytes cannot be a cluster", off, n)
	}
	return n, nil
}

// frameJob fills j from a FrameSource: a copy of the cluster's zstd frame,
// or its bytes as a plain cluster (the source found them incompressible,
// or they end the disk). Nothing is compressed.
func frameJob(ctx context.Context, src FrameSource, j *job, csize int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	off := j.gc * csize
	n, err := frameLen(src, j.gc, csize)
	if err != nil {
		return err
	}
	j.zero = false
	if n > 0 {
		out, err := src.AppendFrame(j.out[:0], j.gc)
		if err != nil {
			return fmt.Errorf("qcow2: read source at offset %d: %w", off, err)
		}
		if len(out) != n {
			return fmt.Errorf("qcow2: source frame at offset %d: %d bytes, announced %d", off, len(out), n)
		}
		j.out, j.plain = out, false
		return nil
	}
	want := min(csize, src.Size()-off)
	raw, err := src.AppendFrame(j.raw[:0], j.gc)
	if err != nil {
		return fmt.Errorf("qcow2: read source at offset %d: %w", off, err)
	}
	if int64(len(raw)) != want || cap(raw) < int(csize) {
		return fmt.Errorf("qcow2: read source at offset %d: %d bytes, want %d", off, len(raw), want)
	}
	j.raw = raw[:csize]
	clear(j.raw[want:])
	j.plain = true
	return nil
}
