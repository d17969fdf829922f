package volume

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/cairn-backup/cairn/fs/guest"
	"github.com/cairn-backup/cairn/fs/guest/ext4"
	"github.com/cairn-backup/cairn/fs/guest/fat"
	"github.com/cairn-backup/cairn/fs/guest/lvm"
	"github.com/cairn-backup/cairn/fs/guest/ntfs"
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
	// extended chain that breaks off: Volumes holds what was read) or
	// unusable (a protective MBR without a GPT, a GPT whose headers are
	// both damaged: the disk is then read as a whole, as Linux does).
	TableErr error
	// Bare is true when the disk has no partition table and is itself a
	// filesystem: Volumes then holds exactly one volume, named "".
	Bare bool
	// Content says what a disk without partitions that is no readable
	// filesystem holds, when that is known: "swap (UUID ...)", "LVM2
	// PV (UUID ..., VG vg0)", ...; "" otherwise.
	Content string
	// VGs are the LVM volume groups whose PVs are partitions of the disk
	// or the whole disk; their visible LVs are among Volumes.
	VGs []*lvm.VG
	// LVMErrs are damaged LVM labels and metadata, and LVs left out
	// because their name was taken.
	LVMErrs []error
	Volumes []*Volume
}

// Volume is one partition, one LVM logical volume, or the whole disk of
// a bare filesystem.
type Volume struct {
	// Name is "part1", ... for a partition; "VG-LV" for a logical volume
	// (device-mapper's name: a '-' inside VG or LV doubled); "" for a
	// bare filesystem.
	Name string
	// Partition is the table entry; nil for a bare filesystem or an LV.
	Partition *partition.Partition
	// LV is the logical volume; nil unless the volume is one.
	LV *lvm.LV
	// Start is where the volume starts on the disk; -1 for an LV, whose
	// extents may lie anywhere (see DiskExtent).
	Start int64
	Size  int64
	// Logf, when set before the first FS call, receives the damage a
	// reader works around rather than fails on (a directory block or
	// entry left out of a listing); the process log when nil.
	Logf func(format string, args ...any)

	r       *io.SectionReader
	content string // what it holds when that is no filesystem we read
	devs    map[*lvm.Device]int64
	once    sync.Once
	fsys    guest.FS
	fsType  string
	err     error

	warning error       // something to tell about a filesystem that opened
	warned  atomic.Bool // warning was handed out
}

// Open reads the partition table of the disk r of size bytes, the LVM
// labels and metadata of its partitions (or of the whole disk), and for
// a disk without partitions probes its first sectors for a filesystem.
// It returns an error only when the disk cannot be read.
func Open(r io.ReaderAt, size int64) (*Disk, error) {
	t, err := partition.Read(r, size)
	if t == nil {
		if !errors.Is(err, partition.ErrCorrupt) {
			return nil, fmt.Errorf("partition table: %w", err)
		}
		// A table damaged beyond use: Linux then sees no partitions and
		// the whole disk is the device; so do we.
		t = &partition.Table{}
	}
	d := &Disk{Table: t, TableErr: err}
	var devs []*lvm.Device
	at := map[*lvm.Device]*Volume{}
	if len(t.Partitions) == 0 {
		// No table, or one without partitions (boot code in sector 0
		// of a bare filesystem): the whole disk may hold a filesystem.
		whole := &Volume{Start: 0, Size: size, r: io.NewSectionReader(r, 0, size)}
		if probe(whole.r, size) != "" {
			d.Bare = true
			d.Volumes = []*Volume{whole}
			return d, nil
		}
		dev := &lvm.Device{Name: "disk", R: whole.r, Size: size}
		devs, at[dev] = append(devs, dev), whole
	}
	for i := range t.Partitions {
		p := &t.Partitions[i]
		v := &Volume{Name: "part" + strconv.Itoa(p.Number), Partition: p, Start: p.Start, Size: p.Size,
			r: io.NewSectionReader(r, p.Start, p.Size)}
		if p.Container {
			v.once.Do(func() { v.err = fmt.Errorf("%s is an extended partition: %w", v.Name, ErrNoFilesystem) })
		} else {
			dev := &lvm.Device{Name: v.Name, R: v.r, Size: v.Size}
			devs, at[dev] = append(devs, dev), v
		}
		d.Volumes = append(d.Volumes, v)
	}
	d.openLVM(devs, at)
	if len(t.Partitions) == 0 {
		whole := at[devs[0]]
		if whole.content == "" {
			whole.content = identify(whole.r, size)
		}
		d.Content = whole.content
	}
	return d, nil
}

// openLVM assembles the VGs whose PVs are among devs (each the device of
// the volume at[dev]) and adds their visible LVs as volumes.
func (d *Disk) openLVM(devs []*lvm.Device, at map[*lvm.Device]*Volume) {
	vgs, problems := lvm.Scan(devs)
	d.VGs, d.LVMErrs = vgs, problems
	start := map[*lvm.Device]int64{}
	for _, dev := range devs {
		v := at[dev]
		start[dev] = v.Start
		if dev.Label == nil {
			continue
		}
		if dev.VG != nil {
			v.content = fmt.Sprintf("LVM2 PV (UUID %s, VG %s)", dev.Label.UUID, dev.VG.Name)
		} else {
			v.content = fmt.Sprintf("LVM2 PV (UUID %s, no VG found)", dev.Label.UUID)
		}
	}
	for _, vg := range vgs {
		for _, lv := range vg.LVs {
			if !lv.Visible {
				continue
			}
			name := lvm.DMName(vg.Name, lv.Name)
			if d.Volume(name) != nil {
				d.LVMErrs = append(d.LVMErrs, fmt.Errorf("LV %s/%s of VG %s: the name %s is taken, LV not shown",
					vg.Name, lv.Name, vg.UUID, name))
				continue
			}
			v := &Volume{Name: name, LV: lv, Start: -1, Size: lv.Size(), devs: start,
				r: io.NewSectionReader(lv, 0, lv.Size())}
			if err := lv.Err(); err != nil {
				if errors.Is(err, lvm.ErrUnsupported) {
					// Nothing of its own to read (a thin pool) or a kind
					// we do not read: like a partition without a filesystem.
					v.content, v.warning = "LVM "+lv.Kind(), err
					err = fmt.Errorf("%w: %w", err, ErrNoFilesystem)
				}
				v.once.Do(func() { v.err = err })
			}
			d.Volumes = append(d.Volumes, v)
		}
	}
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

// Content says what the volume holds when it is no filesystem this
// package reads, if that is known: "swap (UUID ...)", "LUKS2 (UUID
// ...)", "btrfs (UUID ...)", "LVM2 PV (UUID ..., VG vg0)", "LVM thin
// pool"; "" otherwise. It probes the volume if needed.
func (v *Volume) Content() string {
	v.FS()
	return v.content
}

// DiskExtent says where byte off of the volume lies on the disk: the n
// bytes from off are at diskOff, or read as zeros without being on the
// disk when hole is set (chunks of a thin LV never written).
func (v *Volume) DiskExtent(off int64) (diskOff, n int64, hole bool, err error) {
	if off < 0 || off >= v.Size {
		return 0, 0, false, io.EOF
	}
	if v.LV == nil {
		return v.Start + off, v.Size - off, false, nil
	}
	dev, devOff, n, err := v.LV.Locate(off)
	if err != nil {
		return 0, 0, false, err
	}
	if dev == nil {
		return 0, n, true, nil
	}
	return v.devs[dev] + devOff, n, false, nil
}

// FS probes and opens the volume's filesystem on first call and returns
// the same one afterwards. Nothing readable gives ErrNoFilesystem; a
// damaged filesystem an error wrapping guest.ErrCorrupt.
func (v *Volume) FS() (guest.FS, error) {
	v.once.Do(func() {
		if v.err = v.readable(); v.err != nil {
			return
		}
		v.fsType = probe(v.r, v.Size)
		switch v.fsType {
		case "":
			v.err = v.noFilesystem()
		case "ntfs":
			var f *ntfs.FS
			if f, v.err = ntfs.Open(v.r, v.Size, ntfs.Options{Logf: v.logf()}); v.err == nil {
				v.fsys = f
			}
		case "xfs":
			var f *xfs.FS
			if f, v.err = xfs.OpenOptions(v.r, v.Size, xfs.Options{Logf: v.logf()}); v.err == nil {
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
			if f, v.err = ext4.OpenOptions(v.r, v.Size, ext4.Options{Logf: v.logf()}); v.err == nil {
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

// logf is where a reader sends the damage it works around: Logf, or the
// process log when nobody set one.
func (v *Volume) logf() func(format string, args ...any) {
	if v.Logf != nil {
		return v.Logf
	}
	return log.Printf
}

// readable makes sure an LV's first bytes read before probing them: a
// thin pool's damaged metadata or an invalid snapshot store shows only
// when the LV is read, and is the volume's error rather than "no
// filesystem".
func (v *Volume) readable() error {
	if v.LV == nil {
		return nil
	}
	var b [4096]byte
	if _, err := v.r.ReadAt(b[:min(int64(len(b)), v.Size)], 0); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// noFilesystem is FS's error for a volume without a filesystem we read,
// saying what it holds instead when that is known.
func (v *Volume) noFilesystem() error {
	if v.content == "" {
		v.content = identify(v.r, v.Size)
	}
	if v.content == "" {
		return ErrNoFilesystem
	}
	v.warning = fmt.Errorf("%s: no filesystem cairn reads", v.content)
	return fmt.Errorf("%s: %w", v.content, ErrNoFilesystem)
}

// TakeWarning returns, once, what a reader should log about the volume:
// a journal that could not be replayed, or what a volume that is no
// filesystem holds instead (swap, LUKS, ...); nil otherwise.
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
// "ntfs", "fat", "xfs", or "".
func probe(r io.ReaderAt, size int64) string {
	switch {
	case ntfs.Probe(r, size):
		return "ntfs"
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
