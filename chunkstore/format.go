package chunkstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// On-disk format, version 2 (version 1 is read too). All integers are
// big-endian.
//
//	pack   := packHeader blob* trailer    (version 1 packs have no trailer)
//	packHeader (16 bytes) := "CAIRNPAK" version:u16 flags:u16 reserved:u32
//	blob   := blobHeader payload
//	blobHeader (56 bytes) := "BLOB" kind:u8 codec:u8 flags:u16
//	                         rawLen:u32 storedLen:u32 hash:[32] crc:u32 pad:u32
//
// crc is CRC-32C over the first 44 header bytes and the payload; it lets
// a pack scan tell a torn or damaged blob from a good one without
// decompressing. Flags are zero; encryption will set them. The trailer
// (trailer.go) repeats every blob header at the end of the pack.
const (
	packMagic      = "CAIRNPAK"
	packVersion    = 2
	packHeaderSize = 16
	blobMagic      = "BLOB"
	blobHeaderSize = 56
	// MaxBlockSize bounds rawLen, so a damaged header cannot make a reader
	// allocate without limit.
	MaxBlockSize = 16 << 20
)

// Kind says what a blob holds.
type Kind uint8

const (
	KindData Kind = 1 // disk block bytes
	KindMap  Kind = 2 // a page of a point's block map
)

var (
	// ErrCorrupt marks data that fails its checksum or hash, or a blob
	// whose header does not parse.
	ErrCorrupt = errors.New("damaged data")
	// ErrMissing marks a block the index does not know.
	ErrMissing = errors.New("block missing from vault")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type blobHeader struct {
	Kind      Kind
	Codec     Codec
	RawLen    uint32
	StoredLen uint32
	Hash      Hash
	CRC       uint32
}

func packHeader() []byte {
	b := make([]byte, packHeaderSize)
	copy(b, packMagic)
	binary.BigEndian.PutUint16(b[8:], packVersion)
	return b
}

// checkPackHeader returns the pack's format version.
func checkPackHeader(b []byte) (int, error) {
	if len(b) < packHeaderSize || string(b[:8]) != packMagic {
		return 0, fmt.Errorf("%w: not a cairn pack", ErrCorrupt)
	}
	v := binary.BigEndian.Uint16(b[8:])
	if v < 1 || v > packVersion {
		return 0, fmt.Errorf("pack format version %d is not supported by this cairn (knows 1 to %d)", v, packVersion)
	}
	return int(v), nil
}

// encodeBlobHeader fills dst[:blobHeaderSize] and returns the CRC, which
// covers the header and payload.
func encodeBlobHeader(dst []byte, h blobHeader, payload []byte) uint32 {
	putBlobHeader(dst, h)
	h.CRC = crc32.Update(crc32.Checksum(dst[:48], castagnoli), castagnoli, payload)
	binary.BigEndian.PutUint32(dst[48:], h.CRC)
	return h.CRC
}

// putBlobHeader writes h, CRC included, into dst[:blobHeaderSize].
func putBlobHeader(dst []byte, h blobHeader) {
	copy(dst, blobMagic)
	dst[4] = byte(h.Kind)
	dst[5] = byte(h.Codec)
	binary.BigEndian.PutUint16(dst[6:], 0)
	binary.BigEndian.PutUint32(dst[8:], h.RawLen)
	binary.BigEndian.PutUint32(dst[12:], h.StoredLen)
	copy(dst[16:48], h.Hash[:])
	binary.BigEndian.PutUint32(dst[48:], h.CRC)
	binary.BigEndian.PutUint32(dst[52:], 0)
}

// decodeBlobHeader parses a header without checking the payload CRC.
func decodeBlobHeader(b []byte) (blobHeader, error) {
	var h blobHeader
	if len(b) < blobHeaderSize || string(b[:4]) != blobMagic {
		return h, fmt.Errorf("%w: bad blob header", ErrCorrupt)
	}
	h.Kind = Kind(b[4])
	h.Codec = Codec(b[5])
	// No blob of a version 2 pack has flags (encryption will set them in
	// packs of a new version): set ones are damage, and must read as such
	// so that restore --skip-damaged skips the block and it is recorded.
	if flags := binary.BigEndian.Uint16(b[6:]); flags != 0 {
		return h, fmt.Errorf("%w: blob header with flags %#x, which no pack of this version has", ErrCorrupt, flags)
	}
	h.RawLen = binary.BigEndian.Uint32(b[8:])
	h.StoredLen = binary.BigEndian.Uint32(b[12:])
	copy(h.Hash[:], b[16:48])
	h.CRC = binary.BigEndian.Uint32(b[48:])
	if h.RawLen == 0 || h.RawLen > MaxBlockSize || h.StoredLen > MaxBlockSize+1024 ||
		(h.Kind != KindData && h.Kind != KindMap) || h.Codec > CodecLZ4 {
		return h, fmt.Errorf("%w: implausible blob header", ErrCorrupt)
	}
	return h, nil
}

// checkBlobCRC verifies the CRC over header and payload.
func checkBlobCRC(header, payload []byte, want uint32) bool {
	return crc32.Update(crc32.Checksum(header[:48], castagnoli), castagnoli, payload) == want
}
