package ntfs

import (
	"errors"
	"fmt"

	"github.com/cairn-backup/cairn/fs/guest"
)

// The only compression unit NTFS writes (16 clusters), and the largest
// cluster it compresses with.
const (
	stdCUShift        = 4
	maxCompressedClus = 4096
)

// errEncrypted is the error reads of EFS-encrypted data get: the volume
// holds only ciphertext, keyed by a Windows user. It wraps no sentinel,
// so the mount answers EIO and logs it, as for any unexpected error.
var errEncrypted = errors.New("ntfs: data is encrypted (EFS) and cannot be read")

// unitKey names one decompressed compression unit in the cache.
type unitKey struct {
	ino  uint64
	name string // stream name; "" for the unnamed data
	typ  uint32
	unit uint64
}

// readStream fills p with the bytes of s from offset off; p must end
// within s.size. Bytes past the initialized size, holes and sparse units
// read as zeros. ino names the file in errors and in cache keys.
func (fs *FS) readStream(ino uint64, s *stream, p []byte, off uint64) error {
	if s.err != nil {
		return s.err
	}
	if off > s.size || uint64(len(p)) > s.size-off {
		return fmt.Errorf("ntfs: MFT record %d: read of %d bytes at %d past the %d-byte stream: %w", ino, len(p), off, s.size, guest.ErrCorrupt)
	}
	if s.resident {
		copy(p, s.data[off:])
		return nil
	}
	if s.flags&attrEncrypted != 0 {
		return errEncrypted
	}
	if s.flags&attrCompressed != 0 {
		return fs.readCompressed(ino, s, p, off)
	}
	cs := fs.bt.clusterSize
	for done := 0; done < len(p); {
		pos := off + uint64(done)
		if pos >= s.initSize {
			clear(p[done:])
			return nil
		}
		i := findRun(s.runs, pos/cs)
		if i < 0 {
			return corruptRecord(ino, "stream %q: byte %d is not mapped", s.name, pos)
		}
		r := s.runs[i]
		within := pos - r.vcn*cs
		chunk := min(uint64(len(p)-done), r.n*cs-within, s.initSize-pos)
		dst := p[done : done+int(chunk)]
		if r.lcn == holeLCN {
			clear(dst)
		} else if err := fs.readRaw(dst, r.lcn*cs+within); err != nil {
			return fmt.Errorf("ntfs: MFT record %d: stream %q: %w", ino, s.name, err)
		}
		done += int(chunk)
	}
	return nil
}

// unitKind says how a compression unit is stored.
type unitKind int

const (
	unitHole       unitKind = iota // not allocated: zeros
	unitStored                     // all clusters allocated: plain data
	unitCompressed                 // fewer clusters allocated: LZNT1
)

// unitLayout returns how unit u of the compressed stream s is stored and
// the volume extents (in bytes) that hold it, in order.
func (fs *FS) unitLayout(ino uint64, s *stream, u uint64) (unitKind, []guest.Extent, error) {
	cs := fs.bt.clusterSize
	uc := uint64(1) << s.cuShift
	vcn := u * uc
	var pieces []guest.Extent
	alloc := uint64(0)
	for alloc < uc {
		i := findRun(s.runs, vcn+alloc)
		if i < 0 {
			return 0, nil, corruptRecord(ino, "stream %q: cluster %d of the file is not mapped", s.name, vcn+alloc)
		}
		r := s.runs[i]
		if r.lcn == holeLCN {
			break // the allocated part of a unit ends at its first hole
		}
		skip := vcn + alloc - r.vcn
		n := min(r.n-skip, uc-alloc)
		e := guest.Extent{Off: int64((r.lcn + skip) * cs), Len: int64(n * cs)}
		if k := len(pieces) - 1; k >= 0 && pieces[k].Off+pieces[k].Len == e.Off {
			pieces[k].Len += e.Len
		} else {
			pieces = append(pieces, e)
		}
		alloc += n
	}
	switch alloc {
	case 0:
		return unitHole, nil, nil
	case uc:
		return unitStored, pieces, nil
	}
	return unitCompressed, pieces, nil
}

// readCompressed reads from a compressed stream unit by unit: stored
// units straight into p, compressed ones through the unit cache.
func (fs *FS) readCompressed(ino uint64, s *stream, p []byte, off uint64) error {
	cs := fs.bt.clusterSize
	if s.cuShift != stdCUShift || cs > maxCompressedClus {
		return corruptRecord(ino, "stream %q: compression unit of 2^%d clusters of %d bytes", s.name, s.cuShift, cs)
	}
	ub := cs << s.cuShift
	for done := 0; done < len(p); {
		pos := off + uint64(done)
		if pos >= s.initSize {
			clear(p[done:])
			return nil
		}
		u := pos / ub
		within := pos - u*ub
		chunk := min(uint64(len(p)-done), ub-within, s.initSize-pos)
		dst := p[done : done+int(chunk)]
		kind, pieces, err := fs.unitLayout(ino, s, u)
		if err != nil {
			return err
		}
		switch kind {
		case unitHole:
			clear(dst)
		case unitStored:
			if err := fs.readPieces(dst, pieces, within); err != nil {
				return fmt.Errorf("ntfs: MFT record %d: stream %q: %w", ino, s.name, err)
			}
		case unitCompressed:
			data, err := fs.decompressUnit(ino, s, u, pieces, ub)
			if err != nil {
				return err
			}
			copy(dst, data[within:])
		}
		done += int(chunk)
	}
	return nil
}

// decompressUnit returns unit u of s decompressed, from the cache when
// possible. The result is shared: callers must not modify it.
func (fs *FS) decompressUnit(ino uint64, s *stream, u uint64, pieces []guest.Extent, ub uint64) ([]byte, error) {
	k := unitKey{ino: ino, name: s.name, typ: atData, unit: u}
	if b, ok := fs.units.Get(k); ok {
		return b, nil
	}
	n := int64(0)
	for _, e := range pieces {
		n += e.Len
	}
	src := make([]byte, n)
	if err := fs.readPieces(src, pieces, 0); err != nil {
		return nil, fmt.Errorf("ntfs: MFT record %d: stream %q: %w", ino, s.name, err)
	}
	out := make([]byte, ub)
	if err := lznt1Decompress(out, src); err != nil {
		return nil, corruptRecord(ino, "stream %q: compression unit %d: %v", s.name, u, err)
	}
	fs.units.Add(k, out, len(out))
	return out, nil
}

// readPieces fills dst from the concatenation of the extents, starting
// skip bytes in.
func (fs *FS) readPieces(dst []byte, pieces []guest.Extent, skip uint64) error {
	for _, e := range pieces {
		if len(dst) == 0 {
			break
		}
		if skip >= uint64(e.Len) {
			skip -= uint64(e.Len)
			continue
		}
		n := min(uint64(len(dst)), uint64(e.Len)-skip)
		if err := fs.readRaw(dst[:n], uint64(e.Off)+skip); err != nil {
			return err
		}
		dst = dst[n:]
		skip = 0
	}
	if len(dst) > 0 {
		return fmt.Errorf("ntfs: compression unit shorter than its read: %w", guest.ErrCorrupt)
	}
	return nil
}
