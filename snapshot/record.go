package snapshot

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/cairn-backup/cairn/chunkstore"
)

// A point record is the self-describing object that holds a committed
// point in storage, and the value the index caches for it:
//
//	record := "CAIRNPNT" version:u16 flags:u16 length:u32 manifest hash
//
// manifest is the point's JSON manifest (Point), length bytes long, and
// hash the BLAKE3-256 of everything before it, so a damaged record (in
// storage or in the index) is an error, never a wrong size or block map.
// Flags are zero; encryption will set them. Its name in storage is
// RESOURCE@ID.
const (
	recordMagic   = "CAIRNPNT"
	recordVersion = 1
	recordHeader  = 16
	recordHash    = 32
)

// ErrBadRecord marks a point record that fails its checks.
var ErrBadRecord = errors.New("damaged point record")

func encodeRecord(p *Point) ([]byte, error) {
	m, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	b := make([]byte, recordHeader, recordHeader+len(m)+recordHash)
	copy(b, recordMagic)
	binary.BigEndian.PutUint16(b[8:], recordVersion)
	binary.BigEndian.PutUint32(b[12:], uint32(len(m)))
	b = append(b, m...)
	h := chunkstore.Sum(b)
	return append(b, h[:]...), nil
}

// decodeRecord checks and decodes a point record. legacy accepts the
// bare JSON manifests the index of a format 1 vault holds.
func decodeRecord(b []byte, legacy bool) (*Point, error) {
	if legacy && len(b) > 0 && b[0] == '{' {
		return decodePoint(b)
	}
	if len(b) < recordHeader+recordHash || string(b[:8]) != recordMagic {
		return nil, fmt.Errorf("%w: not a point record", ErrBadRecord)
	}
	if v := binary.BigEndian.Uint16(b[8:]); v != recordVersion {
		return nil, fmt.Errorf("point record version %d is not supported by this cairn (knows %d)", v, recordVersion)
	}
	if f := binary.BigEndian.Uint16(b[10:]); f != 0 {
		return nil, fmt.Errorf("point record flags %#x are not supported by this cairn", f)
	}
	n := int(binary.BigEndian.Uint32(b[12:]))
	if n != len(b)-recordHeader-recordHash {
		return nil, fmt.Errorf("%w: %d bytes, its header says %d", ErrBadRecord, len(b), recordHeader+n+recordHash)
	}
	body := b[:recordHeader+n]
	if h := chunkstore.Sum(body); !bytes.Equal(h[:], b[recordHeader+n:]) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrBadRecord)
	}
	p, err := decodePoint(body[recordHeader:])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	return p, nil
}

// recordName is a point's record's name in storage.
func recordName(resource, id string) string { return resource + "@" + id }

// splitRecordName takes a record name apart; ok is false for a name no
// point record has.
func splitRecordName(name string) (resource, id string, ok bool) {
	resource, id, ok = strings.Cut(name, "@")
	if !ok || CheckName("resource", resource) != nil || id == "" || strings.Contains(id, "@") {
		return "", "", false
	}
	return resource, id, true
}
