package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

const (
	magic = 0x514649fb

	minClusterBits = 9
	maxClusterBits = 21

	// Incompatible feature bits.
	incDirty       = 1 << 0
	incCorrupt     = 1 << 1
	incExtData     = 1 << 2
	incCompression = 1 << 3
	incExtL2       = 1 << 4
	incKnown       = incDirty | incCorrupt | incExtData | incCompression | incExtL2

	// Table entry fields.
	offsetMask      = 0x00fffffffffffe00 // L1 entries and standard L2 entries
	flagCopied      = 1 << 63
	flagCompressed  = 1 << 62
	flagZero        = 1 << 0
	compressionZlib = 0
	compressionZstd = 1

	// Header extension types.
	extEnd           = 0x00000000
	extBackingFormat = 0xe2792aca
	extDataFile      = 0x44415441

	v2HeaderLength  = 72
	v3HeaderLength  = 104
	maxL1Bytes      = 32 << 20 // qemu's own limit on the L1 table
	maxBackingName  = 1023
	headerProbeSize = 112
)

// header is the parsed, validated image header.
type header struct {
	version         uint32
	backingOffset   uint64
	backingSize     uint32
	clusterBits     uint32
	size            uint64
	cryptMethod     uint32
	l1Size          uint32
	l1Offset        uint64
	incompatible    uint64
	headerLength    uint32
	compressionType uint8

	refcountOrder         uint32
	refcountTableOffset   uint64
	refcountTableClusters uint32
	nbSnapshots           uint32
	snapshotsOffset       uint64

	// from the bitmaps extension
	nbBitmaps       uint32
	bitmapDirSize   uint64
	bitmapDirOffset uint64

	backingFile   string
	backingFormat string
}

func (h *header) clusterSize() int64 { return 1 << h.clusterBits }
func (h *header) extL2() bool        { return h.incompatible&incExtL2 != 0 }

// l2Entries is the number of entries in one L2 table.
func (h *header) l2Entries() int64 {
	if h.extL2() {
		return h.clusterSize() / 16
	}
	return h.clusterSize() / 8
}

// readHeader parses and validates the header and its extensions.
func readHeader(r io.ReaderAt, fileSize int64, name string) (*header, error) {
	if fileSize < v2HeaderLength {
		return nil, errf(name, ErrCorrupt, "file is %d bytes, too short for a header", fileSize)
	}
	buf := make([]byte, min(fileSize, headerProbeSize))
	if err := readFull(r, buf, 0); err != nil {
		return nil, errf(name, ErrCorrupt, "read header: %v", err)
	}
	be := binary.BigEndian
	if be.Uint32(buf) != magic {
		return nil, errf(name, ErrCorrupt, "bad magic %#x at offset 0", be.Uint32(buf))
	}
	h := &header{
		version:       be.Uint32(buf[4:]),
		backingOffset: be.Uint64(buf[8:]),
		backingSize:   be.Uint32(buf[16:]),
		clusterBits:   be.Uint32(buf[20:]),
		size:          be.Uint64(buf[24:]),
		cryptMethod:   be.Uint32(buf[32:]),
		l1Size:        be.Uint32(buf[36:]),
		l1Offset:      be.Uint64(buf[40:]),
		headerLength:  v2HeaderLength,

		refcountOrder:         4,
		refcountTableOffset:   be.Uint64(buf[48:]),
		refcountTableClusters: be.Uint32(buf[56:]),
		nbSnapshots:           be.Uint32(buf[60:]),
		snapshotsOffset:       be.Uint64(buf[64:]),
	}
	switch h.version {
	case 2:
	case 3:
		if len(buf) < v3HeaderLength {
			return nil, errf(name, ErrCorrupt, "file is %d bytes, too short for a version 3 header", fileSize)
		}
		h.incompatible = be.Uint64(buf[72:])
		if h.refcountOrder = be.Uint32(buf[96:]); h.refcountOrder > 6 {
			return nil, errf(name, ErrCorrupt, "refcount_order %d at offset 96 is out of range", h.refcountOrder)
		}
		h.headerLength = be.Uint32(buf[100:])
		if h.headerLength < v3HeaderLength {
			return nil, errf(name, ErrCorrupt, "header_length %d at offset 100 is below %d", h.headerLength, v3HeaderLength)
		}
		if h.headerLength > v3HeaderLength && len(buf) > v3HeaderLength {
			h.compressionType = buf[104]
		}
	default:
		return nil, errf(name, ErrUnsupported, "version %d (only 2 and 3 are read)", h.version)
	}
	if h.clusterBits < minClusterBits || h.clusterBits > maxClusterBits {
		return nil, errf(name, ErrCorrupt, "cluster_bits %d at offset 20 is outside %d..%d", h.clusterBits, minClusterBits, maxClusterBits)
	}
	C := h.clusterSize()
	if int64(h.headerLength) > C {
		return nil, errf(name, ErrCorrupt, "header_length %d at offset 100 exceeds the cluster size", h.headerLength)
	}
	if h.cryptMethod != 0 {
		return nil, errf(name, ErrEncrypted, "crypt_method %d", h.cryptMethod)
	}
	if h.incompatible&incCorrupt != 0 {
		return nil, errf(name, ErrCorrupt, "image is marked corrupt; run qemu-img check -r")
	}
	if h.incompatible&incExtData != 0 {
		return nil, errf(name, ErrUnsupported, "external data files are not supported")
	}
	if unknown := h.incompatible &^ incKnown; unknown != 0 {
		return nil, errf(name, ErrUnsupported, "unknown incompatible features %#x", unknown)
	}
	if h.extL2() && h.clusterBits < 14 {
		return nil, errf(name, ErrCorrupt, "extended L2 entries with cluster_bits %d (minimum 14)", h.clusterBits)
	}
	switch h.compressionType {
	case compressionZlib:
	case compressionZstd:
		if h.incompatible&incCompression == 0 {
			return nil, errf(name, ErrCorrupt, "compression_type zstd without its incompatible feature bit")
		}
	default:
		return nil, errf(name, ErrUnsupported, "compression_type %d at offset 104", h.compressionType)
	}
	if h.size > 1<<62 {
		return nil, errf(name, ErrCorrupt, "virtual size %d at offset 24 is too large", h.size)
	}

	// L1 table: must map the whole virtual size and lie inside the file.
	l2Span := uint64(h.l2Entries()) * uint64(C)
	need := (h.size + l2Span - 1) / l2Span
	if uint64(h.l1Size) < need {
		return nil, errf(name, ErrCorrupt, "L1 table has %d entries, virtual size %d needs %d", h.l1Size, h.size, need)
	}
	if uint64(h.l1Size)*8 > maxL1Bytes {
		return nil, errf(name, ErrCorrupt, "L1 table of %d entries is too large", h.l1Size)
	}
	if h.l1Size > 0 {
		if h.l1Offset%uint64(C) != 0 || h.l1Offset == 0 {
			return nil, errf(name, ErrCorrupt, "L1 table offset %#x is not cluster aligned", h.l1Offset)
		}
		if h.l1Offset > uint64(fileSize) || uint64(h.l1Size)*8 > uint64(fileSize)-h.l1Offset {
			return nil, errf(name, ErrCorrupt, "L1 table at offset %#x (%d bytes) is beyond the end of the file (%d bytes); truncated?", h.l1Offset, uint64(h.l1Size)*8, fileSize)
		}
	}

	if err := h.readExtensions(r, fileSize, name); err != nil {
		return nil, err
	}
	if h.backingOffset != 0 {
		if h.backingSize == 0 || h.backingSize > maxBackingName {
			return nil, errf(name, ErrCorrupt, "backing file name length %d at offset 16", h.backingSize)
		}
		if h.backingOffset >= uint64(C) || h.backingOffset+uint64(h.backingSize) > uint64(min(C, fileSize)) {
			return nil, errf(name, ErrCorrupt, "backing file name at offset %#x is outside the header cluster", h.backingOffset)
		}
		nb := make([]byte, h.backingSize)
		if err := readFull(r, nb, int64(h.backingOffset)); err != nil {
			return nil, errf(name, ErrCorrupt, "read backing file name at offset %#x: %v", h.backingOffset, err)
		}
		h.backingFile = string(nb)
	}
	return h, nil
}

// readExtensions walks the header extensions that follow the header in the
// first cluster.
func (h *header) readExtensions(r io.ReaderAt, fileSize int64, name string) error {
	end := min(h.clusterSize(), fileSize)
	if h.backingOffset != 0 && int64(h.backingOffset) < end {
		end = int64(h.backingOffset)
	}
	off := int64(h.headerLength)
	var hdr [8]byte
	for off+8 <= end {
		if err := readFull(r, hdr[:], off); err != nil {
			return errf(name, ErrCorrupt, "read header extension at offset %#x: %v", off, err)
		}
		typ := binary.BigEndian.Uint32(hdr[:])
		n := int64(binary.BigEndian.Uint32(hdr[4:]))
		// Checked before the end marker, as qemu does: a header_length
		// that is not where the extensions start reads a length from
		// the wrong bytes.
		if n > end-off-8 {
			return errf(name, ErrCorrupt, "header extension %#x at offset %#x overruns the header cluster", typ, off)
		}
		if typ == extEnd {
			return nil
		}
		switch typ {
		case extBackingFormat:
			b := make([]byte, n)
			if err := readFull(r, b, off+8); err != nil {
				return errf(name, ErrCorrupt, "read backing format at offset %#x: %v", off+8, err)
			}
			h.backingFormat = string(b)
		case extDataFile:
			return errf(name, ErrUnsupported, "external data files are not supported")
		case extBitmaps:
			if n < 24 {
				return errf(name, ErrCorrupt, "bitmaps extension of %d bytes at offset %#x", n, off)
			}
			var b [24]byte
			if err := readFull(r, b[:], off+8); err != nil {
				return errf(name, ErrCorrupt, "read bitmaps extension at offset %#x: %v", off+8, err)
			}
			h.nbBitmaps = binary.BigEndian.Uint32(b[0:])
			h.bitmapDirSize = binary.BigEndian.Uint64(b[8:])
			h.bitmapDirOffset = binary.BigEndian.Uint64(b[16:])
		}
		off += 8 + (n+7)&^7
	}
	return nil
}

// readFull reads len(p) bytes at off; a short read is an error.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = fmt.Errorf("short read: %d of %d bytes at offset %#x", n, len(p), off)
	}
	return err
}
