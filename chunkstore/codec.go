package chunkstore

import (
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/zeebo/blake3"

	"github.com/cairn-backup/cairn/index"
)

// Hash is a block's content hash.
type Hash = index.Hash

// Codec says how a blob's payload is stored.
type Codec uint8

const (
	CodecNone Codec = 0
	CodecZstd Codec = 1
	CodecLZ4  Codec = 2
)

func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecZstd:
		return "zstd"
	case CodecLZ4:
		return "lz4"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// ParseCodec accepts the names printed by Codec.String.
func ParseCodec(s string) (Codec, error) {
	switch s {
	case "none":
		return CodecNone, nil
	case "zstd":
		return CodecZstd, nil
	case "lz4":
		return CodecLZ4, nil
	}
	return 0, fmt.Errorf("unknown compression %q (want zstd, lz4 or none)", s)
}

// Sum returns the hash of a block.
func Sum(b []byte) Hash { return Hash(blake3.Sum256(b)) }

// IsZero reports whether b holds only zero bytes.
func IsZero(b []byte) bool {
	// Compare 8 bytes at a time; most data blocks fail in the first word.
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

var (
	// SpeedFastest (about zstd level 1): on real disks it costs 3.6 CPU
	// seconds per GB against 5.2 for SpeedDefault, for a vault about 4%
	// larger (BENCHMARKS.md); backups are bound by compression.
	zstdEncoders = sync.Pool{New: func() any {
		// No frame checksum: the blob header's CRC-32C covers the
		// stored bytes and BLAKE3 the content.
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true),
			zstd.WithEncoderCRC(false))
		if err != nil {
			panic(err) // only on invalid options
		}
		return e
	}}
	// Frame checksums (in blocks written before they were dropped) are
	// not checked: every decoded block is verified against its BLAKE3
	// hash, which makes xxhash redundant work.
	zstdDecoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxMemory(64<<20), zstd.IgnoreChecksum(true))
	lz4Compressors = sync.Pool{New: func() any { return new(lz4.Compressor) }}
)

// Compress encodes raw with codec c into dst (reusing its capacity) and
// returns the codec actually used: CodecNone with raw itself when the
// encoded form would not be smaller. Safe for concurrent use.
func Compress(c Codec, raw, dst []byte) (Codec, []byte) {
	switch c {
	case CodecZstd:
		e := zstdEncoders.Get().(*zstd.Encoder)
		dst = e.EncodeAll(raw, dst[:0])
		zstdEncoders.Put(e)
	case CodecLZ4:
		if cap(dst) < lz4.CompressBlockBound(len(raw)) {
			dst = make([]byte, lz4.CompressBlockBound(len(raw)))
		}
		dst = dst[:cap(dst)]
		lc := lz4Compressors.Get().(*lz4.Compressor)
		n, err := lc.CompressBlock(raw, dst)
		lz4Compressors.Put(lc)
		if err != nil || n == 0 {
			return CodecNone, raw
		}
		dst = dst[:n]
	default:
		return CodecNone, raw
	}
	if len(dst) >= len(raw) {
		return CodecNone, raw
	}
	return c, dst
}

// decodeSlack is the spare capacity newBlockBuf leaves after a block.
// With at least 16 bytes to spare the zstd decoder keeps its fast copy
// loops to the end of the last 128 KiB zstd block of a frame; without it
// that block takes the bounds-checked loop, measured 40% slower.
const decodeSlack = 64

// newBlockBuf returns a buffer for a block of n decompressed bytes.
func newBlockBuf(n int) []byte { return make([]byte, n, n+decodeSlack) }

// decompress decodes stored into dst, which must have length rawLen.
func decompress(c Codec, stored, dst []byte) error {
	switch c {
	case CodecNone:
		if len(stored) != len(dst) {
			return fmt.Errorf("stored %d bytes, want %d", len(stored), len(dst))
		}
		copy(dst, stored)
		return nil
	case CodecZstd:
		out, err := zstdDecoder.DecodeAll(stored, dst[:0])
		if err != nil {
			return err
		}
		if len(out) != len(dst) {
			return fmt.Errorf("decompressed to %d bytes, want %d", len(out), len(dst))
		}
		if len(out) > 0 && &out[0] != &dst[0] {
			copy(dst, out)
		}
		return nil
	case CodecLZ4:
		n, err := lz4.UncompressBlock(stored, dst)
		if err != nil {
			return err
		}
		if n != len(dst) {
			return fmt.Errorf("decompressed to %d bytes, want %d", n, len(dst))
		}
		return nil
	}
	return fmt.Errorf("unknown codec %d", c)
}
