package fs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cairn-backup/cairn/fs/guest/volume"
	"github.com/cairn-backup/cairn/snapshot"
)

// diskDir is DISK/ beside DISK.raw: partN/ and partN.raw for each
// partition and VG-LV/ and VG-LV.raw for each LVM logical volume (a
// folder only for a volume whose filesystem opens), or the root of a
// bare filesystem. Nothing of the disk is read until someone looks
// inside; the partition table, the LVM metadata and the opened
// filesystems are then kept as long as the kernel keeps this node.
type diskDir struct {
	gofs.Inode
	readOnly
	fsys *FS
	// r is what the partition table, LVM and the guest filesystems read
	// the disk through. Its own read-ahead is off: logical volumes and
	// guest files load ahead for themselves (they know where their next
	// bytes lie), and a filesystem's metadata reads interleaved with
	// several files' reads would only start streams that load bytes no
	// one asked for. Each partN.raw has a reader of its own, with it on.
	r *snapshot.DiskReader

	once sync.Once
	disk *volume.Disk
	err  error
}

var (
	_ gofs.NodeLookuper  = (*diskDir)(nil)
	_ gofs.NodeReaddirer = (*diskDir)(nil)
	_ gofs.NodeGetattrer = (*diskDir)(nil)
)

func (d *diskDir) Getattr(_ context.Context, _ gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	dirAttr(&out.Attr, d.r.Point().Time)
	out.SetTimeout(immutableTimeout)
	return 0
}

func (d *diskDir) where() string {
	return d.r.Point().Name() + " disk " + d.r.Disk().Name
}

func (d *diskDir) open() (*volume.Disk, syscall.Errno) {
	d.once.Do(func() {
		d.disk, d.err = volume.Open(d.r, d.r.Size())
		if d.err != nil {
			d.fsys.logf("%s: %v", d.where(), d.err)
			return
		}
		if d.disk.TableErr != nil {
			d.fsys.logf("%s: %v (showing what could be read)", d.where(), d.disk.TableErr)
		}
		for _, err := range d.disk.LVMErrs {
			d.fsys.logf("%s: %v", d.where(), err)
		}
		if !d.disk.Bare && len(d.disk.Table.Partitions) == 0 && d.disk.Content != "" {
			d.fsys.logf("%s: %s: no filesystem cairn reads", d.where(), d.disk.Content)
		}
		if d.err == nil {
			for _, v := range d.disk.Volumes {
				where := strings.TrimSpace(d.where() + " " + v.Name)
				v.Logf = func(f string, a ...any) { d.fsys.logf("%s: %s", where, fmt.Sprintf(f, a...)) }
			}
		}
	})
	if d.err != nil {
		return nil, syscall.EIO
	}
	return d.disk, 0
}

// guestVol opens v's filesystem. ENOENT when it holds none we read; EIO,
// logged, when it is damaged. A warning about a filesystem that opened
// (a journal not replayed) is logged once.
func (d *diskDir) guestVol(v *volume.Volume) (*guestVol, syscall.Errno) {
	where := func() string {
		if v.Name != "" {
			return d.where() + " " + v.Name
		}
		return d.where()
	}
	gfs, err := v.FS()
	if errors.Is(err, volume.ErrNoFilesystem) {
		// Say once what it holds instead, when that is known (swap,
		// LUKS, an LVM PV or thin pool, ...).
		if w := v.TakeWarning(); w != nil {
			d.fsys.logf("%s: %v", where(), w)
		}
		return nil, syscall.ENOENT
	}
	if err != nil {
		d.fsys.logf("%s: %v", where(), err)
		return nil, syscall.EIO
	}
	if w := v.TakeWarning(); w != nil {
		d.fsys.logf("%s: %v", where(), w)
	}
	p := d.r.Point()
	return &guestVol{fsys: d.fsys, gfs: gfs, ident: [4]string{p.Resource, p.ID, d.r.Disk().Name, v.Name},
		disk: d.r, vol: v}, 0
}

func (d *diskDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	disk, errno := d.open()
	if errno != 0 {
		return nil, errno
	}
	if disk.Bare {
		gv, errno := d.guestVol(disk.Volumes[0])
		if errno != 0 {
			return nil, errno
		}
		return guestLookup(ctx, &d.Inode, gv, gv.gfs.Root(), name, out)
	}
	p := d.r.Point()
	if part, ok := strings.CutSuffix(name, diskSuffix); ok {
		v := disk.Volume(part)
		if v == nil {
			return nil, syscall.ENOENT
		}
		var node gofs.InodeEmbedder
		if v.LV != nil {
			f := &volFile{fsys: d.fsys, r: d.r, vol: v}
			f.ahead.SetMax(d.fsys.readAhead)
			f.fill(&out.Attr)
			node = f
		} else {
			r, err := d.fsys.vault.OpenDisk(p, d.r.Disk().Name)
			if err != nil {
				return nil, d.fsys.errno("open disk", err)
			}
			r.SetReadAhead(d.fsys.readAhead)
			f := newPartFile(d.fsys, r, v.Start, v.Size)
			f.fill(&out.Attr)
			node = f
		}
		out.SetEntryTimeout(immutableTimeout)
		out.SetAttrTimeout(immutableTimeout)
		return d.NewInode(ctx, node, gofs.StableAttr{Mode: syscall.S_IFREG,
			Ino: inoOf("part", p.Resource, p.ID, d.r.Disk().Name, part)}), 0
	}
	v := disk.Volume(name)
	if v == nil || v.Name == "" {
		return nil, syscall.ENOENT
	}
	gv, errno := d.guestVol(v)
	if errno != 0 {
		return nil, errno
	}
	root := gv.gfs.Root()
	a, err := gv.gfs.Stat(root)
	if err != nil {
		return nil, gv.errno("stat root", root, err)
	}
	return gv.newChild(ctx, &d.Inode, &a, out), 0
}

func (d *diskDir) Readdir(context.Context) (gofs.DirStream, syscall.Errno) {
	disk, errno := d.open()
	if errno != 0 {
		return nil, errno
	}
	if disk.Bare {
		gv, errno := d.guestVol(disk.Volumes[0])
		if errno != 0 {
			return nil, errno
		}
		return guestReaddir(gv, gv.gfs.Root())
	}
	p := d.r.Point()
	var entries []fuse.DirEntry
	for _, v := range disk.Volumes {
		// Listing probes each volume: partN/ or VG-LV/ is shown only
		// when its filesystem opens.
		if gv, errno := d.guestVol(v); errno == 0 {
			entries = append(entries, fuse.DirEntry{Name: v.Name, Mode: syscall.S_IFDIR, Ino: gv.ino(gv.gfs.Root())})
		}
		entries = append(entries, fuse.DirEntry{Name: v.Name + diskSuffix, Mode: syscall.S_IFREG,
			Ino: inoOf("part", p.Resource, p.ID, d.r.Disk().Name, v.Name)})
	}
	return gofs.NewListDirStream(entries), 0
}
