package volume

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/cairn-backup/cairn/fs/guest"
	"github.com/cairn-backup/cairn/fs/guest/ext4"
	"github.com/cairn-backup/cairn/fs/guest/fat"
	"github.com/cairn-backup/cairn/fs/guest/xfs"
	"github.com/cairn-backup/cairn/image/partition"
)

var (
	// ErrNoFilesystem: the volume holds nothing this package reads.
	ErrNoFilesystem = fmt.Errorf("no readable filesystem: %w", guest.ErrUnknown)
	// ErrNoVolume: a disk path names a partition the disk does not have.
	ErrNoVolume = errors.New("no such partition")
)

// Disk is a disk split into its volumes.
type Disk struct {
	// Table is the partition table; Kind "" for a disk without one.
	Table *partition.Table
	// TableErr is set when the table is damaged but partly read (an MBR
	// extended chain that breaks off): Volumes holds what was read.
	TableErr error
	// Bare is true when the disk has no partition table and is itself a
	// filesystem: Volumes then holds exactly one volume, named "".
	Bare    bool
	Volumes []*Volume
}

// Volume is one partition, or the whole disk of a bare filesystem.
type Volume struct {
	Name string // "part1", ...; "" for a bare filesystem
	// Partition is the table entry; nil for a bare filesystem.
	Partition *partition.Partition
	Start     int64
	Size      int64
	// Logf, when set before the first FS call, receives the damage a
	// reader works around rather than fails on (xfs: a directory block
	// left out of a listing).
	Logf func(format string, args ...any)

	r      *io.SectionReader
	once   sync.Once
	fsys   guest.FS
	fsType string
	err    error

	warning error       // something to tell about a filesystem that opened
	warned  atomic.Bool // warning was handed out
}

// Open reads the partition table of the disk r of size bytes. It returns
// an error only when the disk cannot be read or its table is damaged
// beyond use.
func Open(r io.ReaderAt, size int64) (*Disk, error) {
	t, err := partition.Read(r, size)
	if t == nil {
		return nil, fmt.Errorf("partition table: %w", err)
	}
	d := &Disk{Table: t}
	if err != nil {
		d.TableErr = err
	}
	if t.Kind == partition.KindNone {
		whole := &Volume{Start: 0, Size: size, r: io.NewSectionReader(r, 0, size)}
		if probe(whole.r, size) != "" {
			d.Bare = true
			d.Volumes = []*Volume{whole}
		}
		return d, nil
	}
	for i := range t.Partitions {
		p := &t.Partitions[i]
		v := &Volume{Name: "part" + strconv.Itoa(p.Number), Partition: p, Start: p.Start, Size: p.Size,
			r: io.NewSectionReader(r, p.Start, p.Size)}
		if p.Container {
			v.once.Do(func() { v.err = fmt.Errorf("%s is an extended partition: %w", v.Name, ErrNoFilesystem) })
		}
		d.Volumes = append(d.Volumes, v)
	}
	return d, nil
}

// Volume returns the volume called name, or nil.
func (d *Disk) Volume(name string) *Volume {
	for _, v := range d.Volumes {
		if v.Name == name {
			return v
		}
	}
	return nil
}

// Reader reads the volume's raw bytes.
func (v *Volume) Reader() *io.SectionReader { return v.r }

// FS probes and opens the volume's filesystem on first call and returns
// the same one afterwards. Nothing readable gives ErrNoFilesystem; a
// damaged filesystem an error wrapping guest.ErrCorrupt.
func (v *Volume) FS() (guest.FS, error) {
	v.once.Do(func() {
		v.fsType = probe(v.r, v.Size)
		switch v.fsType {
		case "":
			v.err = ErrNoFilesystem
		case "xfs":
			var f *xfs.FS
			if f, v.err = xfs.OpenOptions(v.r, v.Size, xfs.Options{Logf: v.Logf}); v.err == nil {
				v.fsys = f
				if err := f.LogErr(); err != nil {
					v.warning = fmt.Errorf("xfs: log not replayed, showing the filesystem as last checkpointed: %w", err)
				}
			}
		case "fat":
			var f *fat.FS
			if f, v.err = fat.Open(v.r, v.Size); v.err == nil {
				v.fsys, v.fsType = f, f.Type().String()
			}
		default:
			var f *ext4.FS
			if f, v.err = ext4.Open(v.r, v.Size); v.err == nil {
				v.fsys = f
				if err := f.JournalErr(); err != nil {
					v.warning = fmt.Errorf("%s: journal not replayed, showing the filesystem as last checkpointed: %w", v.fsType, err)
				}
			}
		}
		if v.err != nil && !errors.Is(v.err, ErrNoFilesystem) {
			v.err = fmt.Errorf("%s: %w", v.fsType, v.err)
		}
	})
	return v.fsys, v.err
}

// TakeWarning returns, once, what a reader should log about the opened
// filesystem (a journal that could not be replayed); nil otherwise.
func (v *Volume) TakeWarning() error {
	v.FS()
	if v.warning == nil || v.warned.Swap(true) {
		return nil
	}
	return v.warning
}

// Type names the filesystem found ("ext4", "ext3", "ext2", "FAT32", "xfs", ...),
// probing it if needed; "" when there is none.
func (v *Volume) Type() string {
	v.FS()
	return v.fsType
}

// probe names the filesystem at the start of r: an ext2/3/4 flavour,
// "fat", "xfs", or "".
func probe(r io.ReaderAt, size int64) string {
	switch {
	case ext4.Probe(r, size):
		return extFlavour(r)
	case fat.Probe(r, size):
		return "fat"
	case xfs.Probe(r, size):
		return "xfs"
	}
	return ""
}

// extFlavour tells ext2, ext3 and ext4 apart by their feature flags, as
// blkid does: a journal makes ext3, any ext4-only feature ext4.
func extFlavour(r io.ReaderAt) string {
	var sb [0x68]byte
	if _, err := r.ReadAt(sb[:], 1024); err != nil {
		return "ext4"
	}
	compat := binary.LittleEndian.Uint32(sb[0x5C:])
	incompat := binary.LittleEndian.Uint32(sb[0x60:])
	roCompat := binary.LittleEndian.Uint32(sb[0x64:])
	const (
		compatJournal = 0x4
		// incompat beyond ext3's filetype (0x2), recover (0x4),
		// journal_dev (0x8) and meta_bg (0x10).
		incompatExt4 = ^uint32(0x1f)
		// ro_compat beyond sparse_super, large_file and btree_dir.
		roCompatExt4 = ^uint32(0x7)
	)
	switch {
	case incompat&incompatExt4 != 0 || roCompat&roCompatExt4 != 0:
		return "ext4"
	case compat&compatJournal != 0:
		return "ext3"
	}
	return "ext2"
}
