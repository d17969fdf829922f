package index

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// Key prefixes. One byte each; never reuse a retired value.
const (
	prefixBlock       byte = 'b' // 'b' hash[32] → Location
	prefixPoint       byte = 'p' // 'p' resource 0x00 id → point record
	prefixPack        byte = 'k' // 'k' packID[16] → PackInfo
	prefixDamage      byte = 'd' // 'd' hash[32] → Location reason: a copy known damaged
	prefixPointDamage byte = 'D' // 'D' resource 0x00 id → what is known damaged in the point
	prefixBadRecord   byte = 'r' // 'r' name → why the point record cannot be read
	prefixCandidate   byte = 'L' // 'L' hash[32] packID[16] offset[8] → Location (repair only)
	prefixIssuedID    byte = 'i' // 'i' resource → the newest point ID ever issued for it
	keyVault          byte = 'v' // 'v' → the vault ID this index belongs to
	keySession        byte = 's' // 's' → present while a writer has the index open
)

// Hash identifies a block by its content (BLAKE3-256 of the raw bytes).
// The zero Hash stands for an all-zero block, which is never stored.
type Hash [32]byte

// IsZero reports whether h is the hole marker.
func (h Hash) IsZero() bool { return h == Hash{} }

func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// ParseHash decodes the hexadecimal form produced by String.
func ParseHash(s string) (Hash, error) {
	var h Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("invalid block hash %q", s)
	}
	copy(h[:], b)
	return h, nil
}

// PackID names a pack file: 16 random bytes, written as 32 hex digits.
type PackID [16]byte

func (p PackID) String() string { return hex.EncodeToString(p[:]) }

// ParsePackID decodes the hexadecimal form produced by String.
func ParsePackID(s string) (PackID, error) {
	var p PackID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(p) {
		return p, fmt.Errorf("invalid pack id %q", s)
	}
	copy(p[:], b)
	return p, nil
}

// Location says where a block's blob lives: the blob starts at Offset in
// pack Pack and spans Length bytes (header and stored payload). RawLen is
// the block's size before compression.
type Location struct {
	Pack   PackID
	Offset uint64
	Length uint32
	RawLen uint32
}

const locationSize = 16 + 8 + 4 + 4

func (l Location) encode() []byte {
	b := make([]byte, locationSize)
	copy(b, l.Pack[:])
	binary.BigEndian.PutUint64(b[16:], l.Offset)
	binary.BigEndian.PutUint32(b[24:], l.Length)
	binary.BigEndian.PutUint32(b[28:], l.RawLen)
	return b
}

func decodeLocation(b []byte) (Location, error) {
	var l Location
	if len(b) != locationSize {
		return l, fmt.Errorf("%w: block location of %d bytes", ErrCorrupt, len(b))
	}
	copy(l.Pack[:], b)
	l.Offset = binary.BigEndian.Uint64(b[16:])
	l.Length = binary.BigEndian.Uint32(b[24:])
	l.RawLen = binary.BigEndian.Uint32(b[28:])
	return l, nil
}

// PackInfo records a committed pack.
type PackInfo struct {
	Size  int64
	Blobs int64
}

func (p PackInfo) encode() []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, uint64(p.Size))
	binary.BigEndian.PutUint64(b[8:], uint64(p.Blobs))
	return b
}

func decodePackInfo(b []byte) (PackInfo, error) {
	if len(b) != 16 {
		return PackInfo{}, fmt.Errorf("%w: pack record of %d bytes", ErrCorrupt, len(b))
	}
	return PackInfo{
		Size:  int64(binary.BigEndian.Uint64(b)),
		Blobs: int64(binary.BigEndian.Uint64(b[8:])),
	}, nil
}

func damageKey(h Hash) []byte {
	k := blockKey(h)
	k[0] = prefixDamage
	return k
}

func pointDamageKey(resource, id string) []byte {
	k := pointKey(resource, id)
	k[0] = prefixPointDamage
	return k
}

func candidateKey(h Hash, l Location) []byte {
	k := make([]byte, 0, 1+len(h)+len(l.Pack)+8)
	k = append(k, prefixCandidate)
	k = append(k, h[:]...)
	k = append(k, l.Pack[:]...)
	return binary.BigEndian.AppendUint64(k, l.Offset)
}

func blockKey(h Hash) []byte {
	k := make([]byte, 1+len(h))
	k[0] = prefixBlock
	copy(k[1:], h[:])
	return k
}

func packKey(p PackID) []byte {
	k := make([]byte, 1+len(p))
	k[0] = prefixPack
	copy(k[1:], p[:])
	return k
}

// pointKey is 'p' resource 0x00 id; resource names never contain 0x00, so
// the points of one resource form one contiguous, ordered key range.
func pointKey(resource, id string) []byte {
	k := make([]byte, 0, 2+len(resource)+len(id))
	k = append(k, prefixPoint)
	k = append(k, resource...)
	k = append(k, 0)
	return append(k, id...)
}

func issuedIDKey(resource string) []byte {
	return append([]byte{prefixIssuedID}, resource...)
}

func pointPrefix(resource string) []byte {
	if resource == "" {
		return []byte{prefixPoint}
	}
	return pointKey(resource, "")
}

func splitPointKey(k []byte) (resource, id string, ok bool) {
	if len(k) < 2 || k[0] != prefixPoint {
		return "", "", false
	}
	i := bytes.IndexByte(k[1:], 0)
	if i < 0 {
		return "", "", false
	}
	return string(k[1 : 1+i]), string(k[2+i:]), true
}

// MarshalText encodes h as hex, so manifests stay readable and compact.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes the hex form.
func (h *Hash) UnmarshalText(b []byte) error {
	g, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = g
	return nil
}
