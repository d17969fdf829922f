package qcow2

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cairn-backup/cairn/image"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// Cache budgets, in bytes; each cache keeps at least a few entries.
const (
	l2CacheBytes      = 8 << 20
	clusterCacheBytes = 4 << 20
)

// Image is an opened qcow2 image seen as its guest disk. It implements
// image.Source; ReadAt and NextData are safe for concurrent use.
type Image struct {
	r        io.ReaderAt
	name     string
	fileSize int64
	h        *header
	size     int64
	cbits    uint
	csize    int64
	l2n      int64 // entries per L2 table
	l2bits   uint
	subSize  int64 // extended L2: bytes per subcluster
	l1       []uint64
	backing  image.Source
	closers  []io.Closer

	l2cache  *lru[int64, []byte] // L2 table host offset → raw table
	ccache   *lru[int64, []byte] // compressed data host offset → cluster
	zdec     *zstd.Decoder
	inflates sync.Pool
}

var _ image.Source = (*Image)(nil)

// kind classifies guest bytes.
type kind uint8

const (
	kUnalloc    kind = iota // read from the backing image, or zeros
	kZero                   // reads as zeros
	kData                   // stored uncompressed at host
	kCompressed             // stored compressed at host
)

// mapping describes n guest bytes starting at a queried offset.
type mapping struct {
	kind kind
	host int64 // kData: host offset of the first byte; kCompressed: start of the compressed data
	clen int64 // kCompressed: bytes of compressed data to read
	n    int64
}

// NewReader reads the qcow2 image in r, whose file is size bytes long.
// backing supplies the guest bytes of the backing image; it must be given
// when the image names a backing file, and is ignored otherwise. Close does
// not close r or backing.
func NewReader(r io.ReaderAt, size int64, backing image.Source) (*Image, error) {
	h, err := readHeader(r, size, "")
	if err != nil {
		return nil, err
	}
	if h.backingFile != "" && backing == nil {
		return nil, errf("", ErrUnsupported, "image has backing file %q but no backing source was given", h.backingFile)
	}
	if h.backingFile == "" {
		backing = nil
	}
	return newImage(r, size, h, backing, "")
}

func newImage(r io.ReaderAt, fileSize int64, h *header, backing image.Source, name string) (*Image, error) {
	im := &Image{
		r:        r,
		name:     name,
		fileSize: fileSize,
		h:        h,
		size:     int64(h.size),
		cbits:    uint(h.clusterBits),
		csize:    h.clusterSize(),
		l2n:      h.l2Entries(),
		backing:  backing,
	}
	for 1<<im.l2bits < im.l2n {
		im.l2bits++
	}
	if h.extL2() {
		im.subSize = im.csize / 32
	}
	im.l2cache = newLRU[int64, []byte](max(4, int(l2CacheBytes/im.csize)))
	im.ccache = newLRU[int64, []byte](max(2, int(clusterCacheBytes/im.csize)))

	raw := make([]byte, int64(h.l1Size)*8)
	if err := readFull(r, raw, int64(h.l1Offset)); err != nil {
		return nil, im.errf(ErrCorrupt, "read L1 table at offset %#x: %v", h.l1Offset, err)
	}
	im.l1 = make([]uint64, h.l1Size)
	for i := range im.l1 {
		e := binary.BigEndian.Uint64(raw[8*i:])
		im.l1[i] = e
		off := int64(e & offsetMask)
		if off == 0 {
			continue
		}
		if off&(im.csize-1) != 0 {
			return nil, im.errf(ErrCorrupt, "L1 entry %d: L2 table offset %#x is not cluster aligned", i, off)
		}
		if off > fileSize-im.csize {
			return nil, im.errf(ErrCorrupt, "L1 entry %d: L2 table at offset %#x is beyond the end of the file (%d bytes); truncated?", i, off, fileSize)
		}
	}
	if err := im.checkTables(); err != nil {
		return nil, err
	}
	if h.compressionType == compressionZstd {
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(8<<20))
		if err != nil {
			return nil, fmt.Errorf("qcow2: zstd decoder: %w", err)
		}
		im.zdec = d
	}
	return im, nil
}

func (im *Image) errf(sentinel error, format string, args ...any) error {
	return errf(im.name, sentinel, format, args...)
}

// Size returns the virtual disk size in bytes.
func (im *Image) Size() int64 { return im.size }

// Close releases the image and, when it was opened with Open, its file
// and backing chain. No read may run during or after Close.
func (im *Image) Close() error {
	var errs []error
	if im.zdec != nil {
		im.zdec.Close()
		im.zdec = nil
	}
	for _, c := range im.closers {
		errs = append(errs, c.Close())
	}
	im.closers = nil
	return errors.Join(errs...)
}

// l2Table returns the raw L2 table of L1 index l1i, or nil when the L1
// entry is unallocated.
func (im *Image) l2Table(l1i int64) ([]byte, error) {
	if l1i >= int64(len(im.l1)) {
		return nil, nil
	}
	off := int64(im.l1[l1i] & offsetMask)
	if off == 0 {
		return nil, nil
	}
	if t, ok := im.l2cache.get(off); ok {
		return t, nil
	}
	t := make([]byte, im.csize)
	if err := readFull(im.r, t, off); err != nil {
		return nil, im.errf(ErrCorrupt, "read L2 table at offset %#x: %v", off, err)
	}
	im.l2cache.add(off, t)
	return t, nil
}

// entry returns the L2 entry (and the extended L2 bitmap) of guest cluster gc.
func (im *Image) entry(t []byte, gc int64) (uint64, uint64) {
	i := gc & (im.l2n - 1)
	if im.subSize != 0 {
		return binary.BigEndian.Uint64(t[16*i:]), binary.BigEndian.Uint64(t[16*i+8:])
	}
	return binary.BigEndian.Uint64(t[8*i:]), 0
}

// mapAt maps the guest bytes from off to the end of a run of the same kind
// (never past the end of one L2 table's span).
func (im *Image) mapAt(off int64) (mapping, error) {
	gc := off >> im.cbits
	within := off & (im.csize - 1)
	l1i := gc >> im.l2bits
	t, err := im.l2Table(l1i)
	if err != nil {
		return mapping{}, err
	}
	if t == nil {
		spanEnd := (l1i + 1) << (im.l2bits + im.cbits)
		return mapping{kind: kUnalloc, n: spanEnd - off}, nil
	}
	if im.subSize != 0 {
		return im.mapExtended(t, gc, within)
	}
	m, err := im.mapCluster(t, gc)
	if err != nil {
		return m, err
	}
	if m.kind == kData {
		m.host += within
	}
	m.n = im.csize - within
	if m.kind == kCompressed {
		return m, nil
	}
	// Merge following clusters of the same kind (and contiguous host
	// clusters) so large reads and hole scans take few steps.
	last := gc | (im.l2n - 1)
	for next := gc + 1; next <= last; next++ {
		nm, err := im.mapCluster(t, next)
		if err != nil || nm.kind != m.kind || (m.kind == kData && nm.host != m.host+m.n) {
			break
		}
		m.n += im.csize
	}
	return m, nil
}

// mapCluster classifies one guest cluster of a standard (not extended) L2 table.
func (im *Image) mapCluster(t []byte, gc int64) (mapping, error) {
	e, _ := im.entry(t, gc)
	if e&flagCompressed != 0 {
		return im.mapCompressed(e, gc)
	}
	if e&flagZero != 0 {
		if im.h.version < 3 {
			return mapping{}, im.errf(ErrCorrupt, "zero flag in a version 2 image, guest offset %#x", gc<<im.cbits)
		}
		return mapping{kind: kZero}, nil
	}
	host := int64(e & offsetMask)
	if host == 0 {
		return mapping{kind: kUnalloc}, nil
	}
	if err := im.checkData(host, gc); err != nil {
		return mapping{}, err
	}
	return mapping{kind: kData, host: host}, nil
}

func (im *Image) checkData(host, gc int64) error {
	if host&(im.csize-1) != 0 {
		return im.errf(ErrCorrupt, "data cluster for guest offset %#x at host offset %#x is not cluster aligned", gc<<im.cbits, host)
	}
	// Only the bytes read must exist: with subclusters qemu leaves the
	// tail of the last cluster unwritten.
	if host >= im.fileSize {
		return im.errf(ErrCorrupt, "data cluster for guest offset %#x at host offset %#x is beyond the end of the file (%d bytes); truncated?", gc<<im.cbits, host, im.fileSize)
	}
	return nil
}

func (im *Image) mapCompressed(e uint64, gc int64) (mapping, error) {
	x := 62 - (im.cbits - 8)
	coff := int64(e & (1<<x - 1))
	nsec := int64((e>>x)&(1<<(im.cbits-8)-1)) + 1
	clen := nsec*512 - coff&511
	if coff >= im.fileSize || coff < 512 {
		return mapping{}, im.errf(ErrCorrupt, "compressed cluster for guest offset %#x at host offset %#x is beyond the end of the file (%d bytes); truncated?", gc<<im.cbits, coff, im.fileSize)
	}
	// qemu's sector rounding may reach past the end of the file.
	clen = min(clen, im.fileSize-coff)
	return mapping{kind: kCompressed, host: coff, clen: clen, n: im.csize}, nil
}

// mapExtended maps guest bytes through an extended L2 entry: 32
// subclusters, each allocated, zero or unallocated.
func (im *Image) mapExtended(t []byte, gc, within int64) (mapping, error) {
	e, bm := im.entry(t, gc)
	if e&flagCompressed != 0 {
		m, err := im.mapCompressed(e, gc)
		m.n = im.csize - within
		return m, err
	}
	host := int64(e & offsetMask)
	class := func(sc int64) (kind, error) {
		alloc, zero := bm>>sc&1 != 0, bm>>(32+sc)&1 != 0
		switch {
		case alloc && zero:
			return 0, im.errf(ErrCorrupt, "subcluster %d of guest offset %#x is both allocated and zero", sc, gc<<im.cbits)
		case alloc:
			return kData, nil
		case zero:
			return kZero, nil
		}
		return kUnalloc, nil
	}
	sc := within / im.subSize
	k, err := class(sc)
	if err != nil {
		return mapping{}, err
	}
	end := sc + 1
	for ; end < 32; end++ {
		if k2, err := class(end); err != nil || k2 != k {
			break
		}
	}
	m := mapping{kind: k, n: end*im.subSize - within}
	if k == kData {
		if host == 0 {
			return mapping{}, im.errf(ErrCorrupt, "allocated subcluster without host cluster, guest offset %#x", gc<<im.cbits)
		}
		if err := im.checkData(host, gc); err != nil {
			return mapping{}, err
		}
		m.host = host + within
	}
	return m, nil
}

// ReadAt reads guest bytes. Unallocated ranges come from the backing image
// or read as zeros. It is safe for concurrent use.
func (im *Image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("qcow2: negative offset %d", off)
	}
	if off >= im.size {
		return 0, io.EOF
	}
	var short error
	if int64(len(p)) > im.size-off {
		p = p[:im.size-off]
		short = io.EOF
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		m, err := im.mapAt(pos)
		if err != nil {
			return done, err
		}
		buf := p[done:min(int64(len(p)), int64(done)+m.n)]
		switch m.kind {
		case kUnalloc:
			err = im.readBacking(buf, pos)
		case kZero:
			clear(buf)
		case kData:
			if err = readFull(im.r, buf, m.host); err != nil {
				err = im.errf(ErrCorrupt, "read data at host offset %#x (file is %d bytes; truncated?): %v", m.host, im.fileSize, err)
			}
		case kCompressed:
			var c []byte
			if c, err = im.compressedCluster(m); err == nil {
				copy(buf, c[pos&(im.csize-1):])
			}
		}
		if err != nil {
			return done, err
		}
		done += len(buf)
	}
	return done, short
}

func (im *Image) readBacking(p []byte, off int64) error {
	n := 0
	if im.backing != nil && off < im.backing.Size() {
		n = int(min(int64(len(p)), im.backing.Size()-off))
		if err := readFull(im.backing, p[:n], off); err != nil {
			return fmt.Errorf("qcow2: read backing image at offset %#x: %w", off, err)
		}
	}
	clear(p[n:])
	return nil
}

// compressedCluster returns the decompressed cluster of m. The result is
// shared through the cache and must not be modified.
func (im *Image) compressedCluster(m mapping) ([]byte, error) {
	if c, ok := im.ccache.get(m.host); ok {
		return c, nil
	}
	in := make([]byte, m.clen)
	if err := readFull(im.r, in, m.host); err != nil {
		return nil, im.errf(ErrCorrupt, "read compressed cluster at host offset %#x: %v", m.host, err)
	}
	out := make([]byte, im.csize)
	var err error
	if im.zdec != nil {
		var n int
		if n, err = zstdFrameLen(in); err == nil {
			var got []byte
			got, err = im.zdec.DecodeAll(in[:n], out[:0])
			if err == nil && len(got) != len(out) {
				err = fmt.Errorf("decompressed to %d bytes, want %d", len(got), len(out))
			}
		}
	} else {
		fr, _ := im.inflates.Get().(io.ReadCloser)
		if fr == nil {
			fr = flate.NewReader(bytes.NewReader(in))
		} else {
			_ = fr.(flate.Resetter).Reset(bytes.NewReader(in), nil)
		}
		_, err = io.ReadFull(fr, out)
		im.inflates.Put(fr)
	}
	if err != nil {
		return nil, im.errf(ErrCorrupt, "decompress cluster at host offset %#x: %v", m.host, err)
	}
	im.ccache.add(m.host, out)
	return out, nil
}

// zstdFrameLen returns the length of the zstd frame at the start of b.
// Compressed clusters are packed back to back, so the bytes qemu's sector
// count covers usually run into the next cluster's frame.
func zstdFrameLen(b []byte) (int, error) {
	if len(b) < 6 || binary.LittleEndian.Uint32(b) != 0xfd2fb528 {
		return 0, errors.New("no zstd frame")
	}
	fhd := b[4]
	pos := 5
	single := fhd>>5&1 == 1
	if !single {
		pos++
	}
	pos += [4]int{0, 1, 2, 4}[fhd&3]
	fcs := [4]int{0, 2, 4, 8}[fhd>>6]
	if fhd>>6 == 0 && single {
		fcs = 1
	}
	pos += fcs
	for {
		if pos+3 > len(b) {
			return 0, errors.New("zstd frame truncated")
		}
		bh := int(b[pos]) | int(b[pos+1])<<8 | int(b[pos+2])<<16
		pos += 3
		switch bh >> 1 & 3 {
		case 0, 2:
			pos += bh >> 3
		case 1:
			pos++
		default:
			return 0, errors.New("reserved zstd block type")
		}
		if pos > len(b) {
			return 0, errors.New("zstd frame truncated")
		}
		if bh&1 == 1 {
			break
		}
	}
	if fhd>>2&1 == 1 {
		pos += 4
	}
	if pos > len(b) {
		return 0, errors.New("zstd frame truncated")
	}
	return pos, nil
}

// NextData returns the first range [start, end) at or after off that may
// hold non-zero bytes: clusters allocated in this image, or unallocated
// clusters over data of the backing image. Adjacent ranges are merged. It
// returns (Size(), Size(), nil) when no data remains.
func (im *Image) NextData(off int64) (int64, int64, error) {
	off = max(off, 0)
	start, end := int64(-1), int64(-1)
	bs, be := int64(-1), int64(-1) // last backing answer, reused while valid
	for pos := off; pos < im.size; {
		m, err := im.mapAt(pos)
		if err != nil {
			return 0, 0, err
		}
		segEnd := min(pos+m.n, im.size)
		ds, de := int64(-1), int64(-1)
		switch m.kind {
		case kData, kCompressed:
			ds, de = pos, segEnd
		case kUnalloc:
			if im.backing != nil && pos < im.backing.Size() {
				if bs < 0 || pos >= be {
					if bs, be, err = im.backing.NextData(pos); err != nil {
						return 0, 0, fmt.Errorf("qcow2: backing image: %w", err)
					}
				}
				if bs < segEnd && bs < be {
					ds, de = max(bs, pos), min(be, segEnd)
				}
			}
		}
		if ds >= 0 {
			if start < 0 {
				start, end = ds, de
			} else if ds == end {
				end = de
			} else {
				return start, end, nil
			}
			if de < segEnd {
				return start, end, nil
			}
		} else if start >= 0 {
			return start, end, nil
		}
		pos = segEnd
	}
	if start < 0 {
		return im.size, im.size, nil
	}
	return start, end, nil
}
