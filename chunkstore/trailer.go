package chunkstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/cairn-backup/cairn/chunkstore/storage"
)

// A version 2 pack ends with a trailer that repeats every blob header,
// so the index can be rebuilt from two ranged reads per pack (the
// footer, then the entries) instead of reading any block data:
//
//	trailer := entry* footer
//	entry   (64 bytes) := offset:u64 blobHeader
//	footer  (32 bytes) := "CAIRNIDX" version:u16 flags:u16 count:u32
//	                      entriesOffset:u64 crc:u32 reserved:u32
//
// crc is CRC-32C over the entries. A pack whose trailer is missing or
// damaged (a truncated pack, a version 1 pack) is read header by header
// instead (scanHeaders).
const (
	trailerMagic  = "CAIRNIDX"
	footerSize    = 32
	trailerEntry  = 8 + blobHeaderSize
	trailerFormat = 1
)

// BlobInfo describes one blob of a pack, from its header alone: the
// payload has not been read, let alone checked.
type BlobInfo struct {
	Hash      Hash
	Kind      Kind
	Codec     Codec
	Offset    int64 // of the header in the pack
	Length    int64 // header and payload
	RawLen    int
	StoredCRC uint32
}

// appendTrailer appends the trailer of a pack whose blobs, entries, end
// at offset at.
func appendTrailer(dst []byte, entries []BlobInfo, at int64) []byte {
	start := len(dst)
	var e [trailerEntry]byte
	for _, b := range entries {
		binary.BigEndian.PutUint64(e[:8], uint64(b.Offset))
		putBlobHeader(e[8:], blobHeader{Kind: b.Kind, Codec: b.Codec, RawLen: uint32(b.RawLen),
			StoredLen: uint32(b.Length - blobHeaderSize), Hash: b.Hash, CRC: b.StoredCRC})
		dst = append(dst, e[:]...)
	}
	crc := crc32.Checksum(dst[start:], castagnoli)
	var f [footerSize]byte
	copy(f[:], trailerMagic)
	binary.BigEndian.PutUint16(f[8:], trailerFormat)
	binary.BigEndian.PutUint32(f[12:], uint32(len(entries)))
	binary.BigEndian.PutUint64(f[16:], uint64(at))
	binary.BigEndian.PutUint32(f[24:], crc)
	return append(dst, f[:]...)
}

// errNoTrailer means a pack has no usable trailer; its headers must be
// scanned.
var errNoTrailer = errors.New("no pack trailer")

// readTrailer returns the blobs a version 2 pack's trailer lists, and
// where the blobs end.
func readTrailer(ctx context.Context, st storage.Storage, name string, size int64) ([]BlobInfo, int64, error) {
	if size < packHeaderSize+footerSize {
		return nil, 0, errNoTrailer
	}
	var f [footerSize]byte
	if err := st.ReadAt(ctx, storage.Packs, name, f[:], size-footerSize); err != nil {
		return nil, 0, err
	}
	if string(f[:8]) != trailerMagic || binary.BigEndian.Uint16(f[8:]) != trailerFormat ||
		binary.BigEndian.Uint16(f[10:]) != 0 || binary.BigEndian.Uint32(f[28:]) != 0 {
		// Flags and the reserved word are zero in format 1: anything
		// else is damage (a use for them will come with a new format).
		return nil, 0, errNoTrailer
	}
	count := int64(binary.BigEndian.Uint32(f[12:]))
	at := int64(binary.BigEndian.Uint64(f[16:]))
	if at < packHeaderSize || at+count*trailerEntry != size-footerSize {
		return nil, 0, errNoTrailer
	}
	buf := make([]byte, count*trailerEntry)
	if err := st.ReadAt(ctx, storage.Packs, name, buf, at); err != nil {
		return nil, 0, err
	}
	if crc32.Checksum(buf, castagnoli) != binary.BigEndian.Uint32(f[24:]) {
		return nil, 0, errNoTrailer
	}
	out := make([]BlobInfo, 0, count)
	end := int64(packHeaderSize)
	for i := int64(0); i < count; i++ {
		e := buf[i*trailerEntry : (i+1)*trailerEntry]
		off := int64(binary.BigEndian.Uint64(e))
		h, err := decodeBlobHeader(e[8:])
		if err != nil || off != end {
			return nil, 0, errNoTrailer // entries must tile the pack
		}
		b := blobInfo(h, off)
		end += b.Length
		out = append(out, b)
	}
	if end != at {
		return nil, 0, errNoTrailer
	}
	return out, at, nil
}

func blobInfo(h blobHeader, off int64) BlobInfo {
	return BlobInfo{Hash: h.Hash, Kind: h.Kind, Codec: h.Codec, Offset: off,
		Length: blobHeaderSize + int64(h.StoredLen), RawLen: int(h.RawLen), StoredCRC: h.CRC}
}

// scanHeaders walks a pack blob header by blob header from the front,
// skipping payloads: for version 1 packs, and for packs whose trailer is
// gone. It stops at the first header that does not parse or a blob that
// runs past the end, returning what came before and an error wrapping
// ErrCorrupt, unless that is a version 2 trailer.
func scanHeaders(ctx context.Context, st storage.Storage, name string, size int64) ([]BlobInfo, error) {
	var ph [packHeaderSize]byte
	if err := st.ReadAt(ctx, storage.Packs, name, ph[:], 0); err != nil {
		return nil, fmt.Errorf("%w: pack %s: %v", ErrCorrupt, name, err)
	}
	if _, err := checkPackHeader(ph[:]); err != nil {
		return nil, fmt.Errorf("pack %s: %w", name, err)
	}
	var out []BlobInfo
	var hb [blobHeaderSize]byte
	for off := int64(packHeaderSize); off < size; {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		if off+blobHeaderSize > size {
			return out, fmt.Errorf("%w: pack %s: truncated blob header at %d", ErrCorrupt, name, off)
		}
		if err := st.ReadAt(ctx, storage.Packs, name, hb[:], off); err != nil {
			return out, fmt.Errorf("pack %s at %d: %w", name, off, err)
		}
		h, err := decodeBlobHeader(hb[:])
		if err != nil {
			if isTrailerAt(hb[:], out, off) {
				return out, nil
			}
			return out, fmt.Errorf("pack %s at %d: %w", name, off, err)
		}
		b := blobInfo(h, off)
		if off+b.Length > size {
			return out, fmt.Errorf("%w: pack %s: blob at %d runs past the end (%d bytes)", ErrCorrupt, name, off, size)
		}
		out = append(out, b)
		off += b.Length
	}
	return out, nil
}

// isTrailerAt reports whether hb, read just after the blobs in found,
// starts a (partly kept) trailer: its first entry gives the offset of
// the pack's first blob, then that blob's header. A trailer entry starts
// with an offset, so it never parses as a blob header itself.
func isTrailerAt(hb []byte, found []BlobInfo, off int64) bool {
	first := int64(packHeaderSize)
	if len(found) > 0 {
		first = found[0].Offset
	}
	return int64(binary.BigEndian.Uint64(hb)) == first && string(hb[8:12]) == blobMagic
}

// ReadPackIndex lists the blobs of pack name (size bytes) from its
// headers alone: the trailer when it is sound, else a scan of every
// header. It reads no block data. An error wrapping ErrCorrupt comes with
// the blobs found before the damage.
func ReadPackIndex(ctx context.Context, st storage.Storage, name string, size int64) ([]BlobInfo, error) {
	entries, _, err := readTrailer(ctx, st, name, size)
	if err == nil {
		return entries, nil
	}
	if !errors.Is(err, errNoTrailer) {
		return nil, fmt.Errorf("pack %s: %w", name, err)
	}
	return scanHeaders(ctx, st, name, size)
}
