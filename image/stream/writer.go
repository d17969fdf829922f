package stream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Codecs accepted by NewWriter.
const (
	Zstd = "zstd"
	LZ4  = "lz4"
	Gzip = "gzip"
)

// ErrCodec is wrapped by NewWriter for an unknown codec or a level
// outside the codec's range.
var ErrCodec = errors.New("stream: bad codec or level")

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("stream: writer closed")

// DefaultChunkSize is the input bytes per frame.
const DefaultChunkSize = 4 << 20

// Options tune a Writer. The zero value of every field but Codec means
// "default".
type Options struct {
	// Codec is Zstd, LZ4 or Gzip.
	Codec string
	// Level is the codec's level: zstd 1-22 (mapped onto the encoder's
	// four speeds; default 3), lz4 1-9 (default: the fast compressor),
	// gzip 1-9 (default 6).
	Level int
	// Workers compressing in parallel; GOMAXPROCS when 0.
	Workers int
	// ChunkSize is the input bytes per frame; DefaultChunkSize when 0.
	ChunkSize int
}

// encodeFunc appends the frame of src to dst. Each worker owns one.
type encodeFunc func(dst *bytes.Buffer, src []byte) error

type chunk struct {
	raw   []byte
	out   bytes.Buffer
	zero  bool // a whole chunk of zeros: write the shared zero frame
	frame bool // out already holds the frame (WriteFrame)
	err   error
	done  chan struct{}
}

// Writer compresses what is written to it into a stream of frames on w.
// Write, Zeros and Close must be called from one goroutine.
type Writer struct {
	w         io.Writer
	size      int
	cur       *chunk
	free      chan *chunk
	work      chan *chunk
	order     chan *chunk
	workers   sync.WaitGroup
	drained   chan struct{}
	zeroFrame []byte

	mu      sync.Mutex
	err     error // first error of a worker or of w
	written int64

	closed bool
	chunks int64 // submitted so far
}

// NewWriter starts the workers of a stream written to w. Close must be
// called to flush the last chunk and stop them.
func NewWriter(w io.Writer, o Options) (*Writer, error) {
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.ChunkSize <= 0 {
		o.ChunkSize = DefaultChunkSize
	}
	encs, closeEncs, err := newEncoders(o)
	if err != nil {
		return nil, err
	}
	sw := &Writer{w: w, size: o.ChunkSize, drained: make(chan struct{})}
	if o.Codec == Zstd {
		sw.zeroFrame = zstdZeroFrame(o.ChunkSize)
	} else {
		var zf bytes.Buffer
		if err := encs[0](&zf, make([]byte, o.ChunkSize)); err != nil {
			closeEncs()
			return nil, fmt.Errorf("stream: %w", err)
		}
		sw.zeroFrame = zf.Bytes()
	}
	window := 2 * o.Workers
	sw.order = make(chan *chunk, window)
	sw.work = make(chan *chunk, window)
	sw.free = make(chan *chunk, window+o.Workers+1)
	for range cap(sw.free) {
		sw.free <- &chunk{done: make(chan struct{}, 1)}
	}
	for i := range o.Workers {
		sw.workers.Add(1)
		go func() {
			defer sw.workers.Done()
			for c := range sw.work {
				if c.frame {
					c.done <- struct{}{}
					continue
				}
				c.out.Reset()
				if !c.zero && sw.failed() == nil {
					c.err = encs[i](&c.out, c.raw)
				}
				c.done <- struct{}{}
			}
		}()
	}
	go func() {
		defer close(sw.drained)
		defer closeEncs()
		for c := range sw.order {
			<-c.done
			if err := sw.failed(); err == nil {
				err = c.err
				if err != nil {
					err = fmt.Errorf("stream: compress: %w", err)
				} else {
					out := c.out.Bytes()
					if c.zero {
						out = sw.zeroFrame
					}
					var n int
					n, err = w.Write(out)
					sw.mu.Lock()
					sw.written += int64(n)
					sw.mu.Unlock()
				}
				if err != nil {
					sw.fail(err)
				}
			}
			sw.free <- c
		}
	}()
	return sw, nil
}

func newEncoders(o Options) ([]encodeFunc, func(), error) {
	encs := make([]encodeFunc, o.Workers)
	switch o.Codec {
	case Zstd:
		level := zstd.SpeedDefault
		if o.Level != 0 {
			if o.Level < 1 || o.Level > 22 {
				return nil, nil, fmt.Errorf("%w: zstd level %d outside 1..22", ErrCodec, o.Level)
			}
			level = zstd.EncoderLevelFromZstd(o.Level)
		}
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(o.Workers))
		if err != nil {
			return nil, nil, fmt.Errorf("stream: %w", err)
		}
		for i := range encs {
			encs[i] = func(dst *bytes.Buffer, src []byte) error {
				dst.Write(enc.EncodeAll(src, dst.AvailableBuffer()))
				return nil
			}
		}
		return encs, func() { enc.Close() }, nil
	case LZ4:
		level := lz4.Fast
		if o.Level != 0 {
			if o.Level < 1 || o.Level > 9 {
				return nil, nil, fmt.Errorf("%w: lz4 level %d outside 1..9", ErrCodec, o.Level)
			}
			level = []lz4.CompressionLevel{lz4.Level1, lz4.Level2, lz4.Level3, lz4.Level4, lz4.Level5,
				lz4.Level6, lz4.Level7, lz4.Level8, lz4.Level9}[o.Level-1]
		}
		for i := range encs {
			zw := lz4.NewWriter(nil)
			if err := zw.Apply(lz4.CompressionLevelOption(level), lz4.BlockSizeOption(lz4.Block4Mb),
				lz4.ConcurrencyOption(1)); err != nil {
				return nil, nil, fmt.Errorf("stream: %w", err)
			}
			encs[i] = func(dst *bytes.Buffer, src []byte) error {
				zw.Reset(dst)
				if _, err := zw.Write(src); err != nil {
					return err
				}
				return zw.Close()
			}
		}
		return encs, func() {}, nil
	case Gzip:
		level := gzip.DefaultCompression
		if o.Level != 0 {
			if o.Level < 1 || o.Level > 9 {
				return nil, nil, fmt.Errorf("%w: gzip level %d outside 1..9", ErrCodec, o.Level)
			}
			level = o.Level
		}
		for i := range encs {
			zw, err := gzip.NewWriterLevel(nil, level)
			if err != nil {
				return nil, nil, fmt.Errorf("stream: %w", err)
			}
			encs[i] = func(dst *bytes.Buffer, src []byte) error {
				zw.Reset(dst)
				if _, err := zw.Write(src); err != nil {
					return err
				}
				return zw.Close()
			}
		}
		return encs, func() {}, nil
	}
	return nil, nil, fmt.Errorf("%w: unknown codec %q (zstd, lz4 or gzip)", ErrCodec, o.Codec)
}

// zstdZeroFrame returns a zstd frame of n zero bytes built from RLE
// blocks (RFC 8878, 3.1.1): 4 bytes per 128 KiB, so the holes of a sparse
// disk cost about 35 bytes per MiB, a third of what the encoder makes of
// them. n must be below 4 GiB.
func zstdZeroFrame(n int) []byte {
	const maxBlock = 128 << 10
	// Magic; a 4-byte content size and a window descriptor (128 KiB: RLE
	// blocks need no history), no checksum, no dictionary.
	f := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x80, 7 << 3}
	f = binary.LittleEndian.AppendUint32(f, uint32(n))
	for n > 0 {
		k := min(n, maxBlock)
		n -= k
		hdr := uint32(1<<1 | k<<3) // block type 1: RLE of k bytes
		if n == 0 {
			hdr |= 1 // last block
		}
		f = append(f, byte(hdr), byte(hdr>>8), byte(hdr>>16), 0)
	}
	return f
}

// writable returns why nothing more can be written: ErrClosed after
// Close, or the first failure.
func (sw *Writer) writable() error {
	if sw.closed {
		return ErrClosed
	}
	return sw.failed()
}

func (sw *Writer) failed() error {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.err
}

func (sw *Writer) fail(err error) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.err == nil {
		sw.err = err
	}
}

// Written returns the compressed bytes written to w so far.
func (sw *Writer) Written() int64 {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	return sw.written
}

// next returns the chunk being filled, taking a free one if needed.
func (sw *Writer) next() *chunk {
	if sw.cur == nil {
		c := <-sw.free
		if cap(c.raw) < sw.size {
			c.raw = make([]byte, 0, sw.size)
		}
		c.raw, c.zero, c.frame, c.err = c.raw[:0], false, false, nil
		sw.cur = c
	}
	return sw.cur
}

func (sw *Writer) submit(c *chunk) {
	sw.cur = nil
	sw.chunks++
	sw.order <- c
	sw.work <- c
}

// Write compresses p. It fails once any earlier chunk failed to compress
// or to reach w.
func (sw *Writer) Write(p []byte) (int, error) {
	if err := sw.writable(); err != nil {
		return 0, err
	}
	n := 0
	for n < len(p) {
		c := sw.next()
		k := copy(c.raw[len(c.raw):sw.size], p[n:])
		c.raw = c.raw[:len(c.raw)+k]
		n += k
		if len(c.raw) == sw.size {
			sw.submit(c)
		}
	}
	return n, nil
}

// WriteFrame appends frame, one complete frame of the stream's codec made
// elsewhere (a zstd vault's block), after what was written before; a
// partial chunk is compressed first. The frame is copied, not checked:
// the caller vouches that it decodes to the bytes it stands for.
func (sw *Writer) WriteFrame(frame []byte) error {
	if err := sw.writable(); err != nil {
		return err
	}
	if sw.cur != nil && len(sw.cur.raw) > 0 {
		sw.submit(sw.cur)
	}
	c := sw.next()
	c.out.Reset()
	c.out.Write(frame)
	c.frame = true
	sw.submit(c)
	return nil
}

// Zeros compresses n zero bytes; whole chunks of them cost no work.
func (sw *Writer) Zeros(n int64) error {
	if err := sw.writable(); err != nil {
		return err
	}
	for n > 0 {
		c := sw.next()
		if len(c.raw) == 0 && n >= int64(sw.size) {
			c.zero = true
			sw.submit(c)
			n -= int64(sw.size)
			continue
		}
		k := min(int64(sw.size-len(c.raw)), n)
		c.raw = c.raw[:len(c.raw)+int(k)]
		clear(c.raw[len(c.raw)-int(k):])
		n -= k
		if len(c.raw) == sw.size {
			sw.submit(c)
		}
	}
	return nil
}

// Close compresses the last partial chunk, waits until every frame is
// written and stops the workers. It does not close w. An empty stream is
// one empty frame, which every decompressor reads as no bytes.
func (sw *Writer) Close() error {
	if sw.closed {
		return ErrClosed
	}
	sw.closed = true
	if sw.cur != nil && len(sw.cur.raw) > 0 || sw.chunks == 0 {
		sw.submit(sw.next())
	}
	close(sw.work)
	close(sw.order)
	sw.workers.Wait()
	<-sw.drained
	return sw.failed()
}
