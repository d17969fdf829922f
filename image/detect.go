package image

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Source is a disk as its guest sees it. ReadAt must be safe for
// concurrent use. NextData returns the first range [start, end) at or after
// off that may hold non-zero bytes; bytes outside every such range read as
// zeros. When no data remains it returns (Size(), Size(), nil).
type Source interface {
	io.ReaderAt
	Size() int64
	NextData(off int64) (start, end int64, err error)
}

// Format names returned by DetectFormat.
const (
	FormatRaw   = "raw"
	FormatQcow2 = "qcow2"
)

// ErrUnsupportedFormat is wrapped by DetectFormat when the bytes carry the
// magic of an image container cairn does not read.
var ErrUnsupportedFormat = errors.New("unsupported image format")

// foreign lists containers that must not be mistaken for raw disks: reading
// them as raw would back up the container instead of the guest disk.
var foreign = []struct {
	name  string
	off   int
	magic []byte
}{
	{"vmdk", 0, []byte("KDMV")},
	{"vmdk", 0, []byte("# Disk DescriptorFile")},
	{"vhdx", 0, []byte("vhdxfile")},
	{"vdi", 0x40, []byte{0x7f, 0x10, 0xda, 0xbe}},
	{"vpc", 0, []byte("conectix")},
	{"qed", 0, []byte("QED\x00")},
}

// DetectFormat reads the first bytes of r and returns FormatQcow2 or
// FormatRaw. Other recognised image containers give an error wrapping
// ErrUnsupportedFormat. A source shorter than any magic is raw.
func DetectFormat(r io.ReaderAt) (string, error) {
	buf := make([]byte, 512)
	n, err := r.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("detect image format: %w", err)
	}
	buf = buf[:n]
	if bytes.HasPrefix(buf, []byte("QFI\xfb")) {
		return FormatQcow2, nil
	}
	for _, f := range foreign {
		if len(buf) >= f.off+len(f.magic) && bytes.Equal(buf[f.off:f.off+len(f.magic)], f.magic) {
			return "", fmt.Errorf("%w: %s images are not supported (convert with qemu-img convert -O qcow2)", ErrUnsupportedFormat, f.name)
		}
	}
	return FormatRaw, nil
}
