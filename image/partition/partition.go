package partition

import (
	"errors"
	"fmt"
	"io"
)

// ErrCorrupt is wrapped by every error about a damaged partition table.
var ErrCorrupt = errors.New("damaged partition table")

// Limits that keep reading bounded whatever the table claims.
const (
	MaxEntriesBytes = 1 << 20 // GPT entries array: count * size
	MaxLogical      = 128     // MBR logical partitions in one extended chain
)

// Kinds of Table.
const (
	KindNone = ""
	KindGPT  = "gpt"
	KindMBR  = "mbr"
)

// Table is the partition table of one disk.
type Table struct {
	Kind       string // "gpt", "mbr", or "" when the disk has none
	SectorSize int    // logical sector size the table is written in
	// Backup is true when a GPT was read from its backup header because
	// the primary header or its entries array is damaged.
	Backup     bool
	DiskGUID   string // GPT disk GUID; "" for MBR
	Partitions []Partition
}

// Partition is one entry of a table.
type Partition struct {
	Number int   // Linux numbering, see the package doc
	Start  int64 // bytes from the start of the disk
	Size   int64 // bytes
	// Type is a human name ("Linux filesystem", "EFI System", "extended",
	// ...) or TypeID when the type is not known.
	Type   string
	TypeID string // GPT type GUID, or "0x83"-style MBR type byte
	Name   string // GPT partition name; "" for MBR
	GUID   string // GPT unique partition GUID; "" for MBR
	// Bootable is the MBR active flag (GPT: legacy BIOS bootable attribute).
	Bootable bool
	// Container marks an MBR extended partition: it holds logical
	// partitions, not a filesystem.
	Container bool
}

// Read parses the partition table of a disk of the given size.
//
// It returns a Table of Kind "" and a nil error when the disk has no
// partition table, and an error wrapping ErrCorrupt when a table is there
// but damaged. When only an MBR extended chain is damaged, the Table with
// the partitions read so far is returned together with the error; when a
// protective MBR has no usable GPT, the MBR's other partitions (or a
// Table of Kind "") are.
func Read(r io.ReaderAt, size int64) (*Table, error) {
	if size < 512 {
		return &Table{}, nil
	}
	var s0 [512]byte
	if err := readFull(r, s0[:], 0); err != nil {
		return nil, err
	}
	t, found, err := readGPT(r, size, s0[:])
	if found || err != nil {
		return t, err
	}
	return readMBR(r, size, s0[:])
}

// readFull reads len(p) bytes at off; a short read is an I/O error of the
// disk, not damage of the table, so it is not wrapped in ErrCorrupt.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("partition: read %d bytes at %d: %w", len(p), off, err)
}

// clip bounds a partition's extent to the disk.
func clip(start, length, disk int64) int64 {
	if start >= disk {
		return 0
	}
	if length > disk-start {
		return disk - start
	}
	return length
}
