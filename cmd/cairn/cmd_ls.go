package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/fs/guest"
	"github.com/cairn-backup/cairn/fs/guest/lvm"
	"github.com/cairn-backup/cairn/fs/guest/volume"
	"github.com/cairn-backup/cairn/image/partition"
	"github.com/cairn-backup/cairn/snapshot"
)

func newLsCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:      "ls",
		Usage:     "list the disks, partitions or files of a point without mounting it",
		ArgsUsage: "POINT[:PATH]",
		Description: "PATH is DISK, DISK/partN/DIR... on a partitioned disk, or DISK/DIR... on a disk\n" +
			"that is a bare filesystem; a leading / is allowed. Without PATH, lists the point's disks.\n\n" +
			"Examples:\n" +
			"  cairn ls web01@latest\n" +
			"  cairn ls web01@latest:vda\n" +
			"  cairn ls web01@latest:vda/part1/etc --json",
		Flags: []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			if err := args(c, 1, 1, "POINT[:PATH] [--json]"); err != nil {
				return err
			}
			ref := c.Args().First()
			lv, err := ask(env, c, http.MethodGet, "/ls", url.Values{"ref": {ref}}, nil, func(v *snapshot.Vault) (*lsView, error) {
				return listGuest(v, ref)
			})
			if err != nil {
				return err
			}
			return renderLs(env, lv, c.Bool("json"))
		},
	}
}

// guestRef is POINT:DISK/PATH taken apart.
type guestRef struct {
	ref     string // as the user wrote it, for messages
	point   *snapshot.Point
	disk    string // "" when the ref names the point alone
	path    string // inside the disk
	release func() // of the point's hold: gc keeps its blocks meanwhile
}

func parseGuestRef(v *snapshot.Vault, ref string) (*guestRef, error) {
	pt, p, _ := strings.Cut(ref, ":")
	point, err := v.Resolve(pt)
	if err != nil {
		return nil, err
	}
	g := &guestRef{ref: ref, point: point, release: v.Hold(point)}
	p = strings.Trim(p, "/")
	disk, rest, _ := strings.Cut(p, "/")
	if disk != "" && point.Disk(strings.TrimSuffix(disk, ".raw")) == nil {
		g.release()
		return nil, fmt.Errorf("%s: %w", ref, snapshot.NoDiskError(point, disk))
	}
	g.disk, g.path = disk, rest
	return g, nil
}

// openVolumes reads the partition table of one disk of a point.
func openVolumes(v *snapshot.Vault, p *snapshot.Point, disk string) (*snapshot.DiskReader, *volume.Disk, error) {
	r, err := v.OpenDisk(p, disk)
	if err != nil {
		return nil, nil, err
	}
	d, err := volume.Open(r, r.Size())
	if err != nil {
		return nil, nil, fmt.Errorf("%s disk %s: %w", p.Name(), disk, err)
	}
	return r, d, nil
}

// guestErr turns a guest reader's error into one line naming the path.
func guestErr(where string, err error) error {
	switch {
	case errors.Is(err, guest.ErrNotFound), errors.Is(err, volume.ErrNoVolume):
		return fmt.Errorf("%s: no such file or directory", where)
	case errors.Is(err, guest.ErrNotDir):
		return fmt.Errorf("%s: not a directory", where)
	case errors.Is(err, volume.ErrLoop):
		return fmt.Errorf("%s: %w", where, volume.ErrLoop)
	case errors.Is(err, volume.ErrNoFilesystem):
		return fmt.Errorf("%s: no readable filesystem on this partition", where)
	case errors.Is(err, guest.ErrCorrupt):
		return fmt.Errorf("%s: damaged filesystem: %w", where, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}

// noFilesystem says that vol holds no filesystem cairn reads, and what
// it holds instead when that is known (swap, LUKS, btrfs, an LVM PV).
func noFilesystem(ref string, vol *volume.Volume) error {
	what := volumeType(vol)
	if c := vol.Content(); c != "" && c != what {
		what += ", " + c
	}
	return fmt.Errorf("%s: no readable filesystem in %s (%s); its raw bytes are %s.raw", ref, vol.Name, what, vol.Name)
}

// volumeType is a volume's partition type, or its kind of LV.
func volumeType(vol *volume.Volume) string {
	switch {
	case vol.Partition != nil:
		return vol.Partition.Type
	case vol.LV != nil:
		return "LVM " + vol.LV.Kind()
	}
	return "whole disk"
}

// entryView is one file as ls prints it in JSON.
type entryView struct {
	Name string `json:"name"`
	// NameBytes holds the name's exact bytes (base64) when they are not
	// valid UTF-8, which JSON strings cannot carry: Name then shows
	// U+FFFD in their place.
	NameBytes []byte    `json:"name_bytes,omitempty"`
	Type      string    `json:"type"` // file, dir, symlink, char, block, fifo, socket
	Mode      string    `json:"mode"` // permission bits in octal, e.g. "4755", "0644"
	Ino       uint64    `json:"ino"`
	Nlink     uint32    `json:"nlink"`
	Uid       uint32    `json:"uid"`
	Gid       uint32    `json:"gid"`
	Size      uint64    `json:"size"`
	Rdev      *rdevView `json:"rdev,omitempty"`
	Mtime     time.Time `json:"mtime"`
	Target    string    `json:"target,omitempty"`
}

type rdevView struct {
	Major uint32 `json:"major"`
	Minor uint32 `json:"minor"`
}

var typeNames = map[uint32]string{
	syscall.S_IFREG: "file", syscall.S_IFDIR: "dir", syscall.S_IFLNK: "symlink", syscall.S_IFCHR: "char",
	syscall.S_IFBLK: "block", syscall.S_IFIFO: "fifo", syscall.S_IFSOCK: "socket",
}

func newEntryView(fsys guest.FS, name string, a guest.Attr) entryView {
	e := entryView{Name: name, Type: typeNames[a.Mode&syscall.S_IFMT], Mode: fmt.Sprintf("%04o", a.Mode&0o7777),
		Ino: a.Ino, Nlink: a.Nlink, Uid: a.Uid, Gid: a.Gid, Size: a.Size, Mtime: a.Mtime.UTC()}
	if !utf8.ValidString(name) {
		e.NameBytes = []byte(name)
	}
	switch a.Mode & syscall.S_IFMT {
	case syscall.S_IFLNK:
		e.Target, _ = fsys.Readlink(a.Ino)
	case syscall.S_IFCHR, syscall.S_IFBLK:
		e.Rdev = &rdevView{Major: unixMajor(a.Rdev), Minor: unixMinor(a.Rdev)}
	}
	return e
}

// stMode is the entry's st_mode again, from its type and mode.
func (e entryView) stMode() uint32 {
	m, _ := strconv.ParseUint(e.Mode, 8, 32)
	for t, name := range typeNames {
		if name == e.Type {
			return t | uint32(m)
		}
	}
	return uint32(m)
}

// glibc's dev_t encoding.
func unixMajor(d uint64) uint32 { return uint32((d>>8)&0xfff) | uint32((d>>32)&^0xfff) }
func unixMinor(d uint64) uint32 { return uint32(d&0xff) | uint32((d>>12)&^0xff) }

// modeString renders st_mode as ls -l does: "drwxr-sr-t".
func modeString(m uint32) string {
	b := []byte("?---------")
	switch m & syscall.S_IFMT {
	case syscall.S_IFREG:
		b[0] = '-'
	case syscall.S_IFDIR:
		b[0] = 'd'
	case syscall.S_IFLNK:
		b[0] = 'l'
	case syscall.S_IFCHR:
		b[0] = 'c'
	case syscall.S_IFBLK:
		b[0] = 'b'
	case syscall.S_IFIFO:
		b[0] = 'p'
	case syscall.S_IFSOCK:
		b[0] = 's'
	}
	const rwx = "rwxrwxrwx"
	for i := 0; i < 9; i++ {
		if m&(1<<(8-i)) != 0 {
			b[i+1] = rwx[i]
		}
	}
	special := func(bit uint32, i int, set, unset byte) {
		if m&bit != 0 {
			if b[i] == '-' {
				b[i] = unset
			} else {
				b[i] = set
			}
		}
	}
	special(syscall.S_ISUID, 3, 's', 'S')
	special(syscall.S_ISGID, 6, 's', 'S')
	special(syscall.S_ISVTX, 9, 't', 'T')
	return string(b)
}

// lsView is what GET /v1/ls answers: Kind says which of its lists it
// holds, and that list is what ls --json prints.
type lsView struct {
	Kind       string          `json:"kind"` // disks, partitions or entries
	Disks      []lsDiskView    `json:"disks,omitempty"`
	Partitions []partitionView `json:"partitions,omitempty"`
	Entries    []entryView     `json:"entries,omitempty"`
}

// listGuest lists what ref names: a point's disks, a disk's partitions,
// or the files of a directory (or the one file) inside a disk.
func listGuest(v *snapshot.Vault, ref string) (*lsView, error) {
	g, err := parseGuestRef(v, ref)
	if err != nil {
		return nil, err
	}
	defer g.release()
	if g.disk == "" {
		return &lsView{Kind: "disks", Disks: lsDisks(v, g.point)}, nil
	}
	if strings.HasSuffix(g.disk, ".raw") {
		return nil, fmt.Errorf("%s: not a directory", ref)
	}
	_, d, err := openVolumes(v, g.point, g.disk)
	if err != nil {
		return nil, err
	}
	if !d.Bare && g.path == "" {
		return &lsView{Kind: "partitions", Partitions: newPartitionViews(d)}, nil
	}
	vol, fsys, ino, err := d.Resolve(g.path, false)
	if err != nil {
		if vol != nil && errors.Is(err, volume.ErrNoFilesystem) && !strings.Contains(g.path, "/") {
			return nil, noFilesystem(ref, vol)
		}
		return nil, guestErr(ref, err)
	}
	a, err := fsys.Stat(ino)
	if err != nil {
		return nil, guestErr(ref, err)
	}
	list := []entryView{}
	if a.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		name := g.path[strings.LastIndex(g.path, "/")+1:]
		list = append(list, newEntryView(fsys, name, a))
	} else {
		ents, err := fsys.ReadDir(ino)
		if err != nil {
			return nil, guestErr(ref, err)
		}
		for _, e := range ents {
			ea, err := fsys.Stat(e.Ino)
			if err != nil {
				return nil, guestErr(ref+"/"+e.Name, err)
			}
			list = append(list, newEntryView(fsys, e.Name, ea))
		}
	}
	return &lsView{Kind: "entries", Entries: list}, nil
}

func renderLs(env *cmdEnv, lv *lsView, asJSON bool) error {
	switch lv.Kind {
	case "disks":
		if lv.Disks == nil {
			lv.Disks = []lsDiskView{}
		}
		if asJSON {
			return writeJSON(env.stdout, lv.Disks)
		}
		tw := tabwriter.NewWriter(env.stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "DISK\tSIZE\tCONTENT")
		for _, d := range lv.Disks {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", d.Name, bytesIEC(d.Size), d.Content)
		}
		return tw.Flush()
	case "partitions":
		if lv.Partitions == nil {
			lv.Partitions = []partitionView{}
		}
		if asJSON {
			return writeJSON(env.stdout, lv.Partitions)
		}
		return printPartitions(env.stdout, lv.Partitions, "")
	}
	if lv.Entries == nil {
		lv.Entries = []entryView{}
	}
	if asJSON {
		return writeJSON(env.stdout, lv.Entries)
	}
	return printLong(env.stdout, lv.Entries)
}

func printLong(w io.Writer, list []entryView) error {
	tw := tabwriter.NewWriter(w, 1, 8, 0, ' ', tabwriter.AlignRight)
	for _, e := range list {
		size := strconv.FormatUint(e.Size, 10)
		if e.Rdev != nil {
			size = fmt.Sprintf("%d, %d", e.Rdev.Major, e.Rdev.Minor)
		}
		name := printable(e.Name)
		if e.Target != "" {
			name += " -> " + printable(e.Target)
		}
		fmt.Fprintf(tw, "%s\t %d\t %d\t %d\t %s\t %s\t %s\n", modeString(e.stMode()), e.Nlink, e.Uid, e.Gid, size,
			e.Mtime.Format("2006-01-02 15:04"), name)
	}
	return tw.Flush()
}

// diskContent says what is on a disk, for ls and show.
func diskContent(d *volume.Disk) string {
	lvs := 0
	for _, v := range d.Volumes {
		if v.LV != nil {
			lvs++
		}
	}
	s := ""
	switch {
	case d.Bare:
		return d.Volumes[0].Type() + " filesystem"
	case len(d.Table.Partitions) == 0 && d.Content != "":
		s = d.Content
	case d.Table.Kind == partition.KindNone:
		return "no partition table, no known filesystem"
	default:
		s = fmt.Sprintf("%s, %d partitions", d.Table.Kind, len(d.Table.Partitions))
	}
	if lvs > 0 {
		s += fmt.Sprintf(", %d LVM logical volumes", lvs)
	}
	return s
}

type lsDiskView struct {
	Name    string `json:"name"`
	Size    int64  `json:"size"`
	Content string `json:"content"`
}

func lsDisks(v *snapshot.Vault, p *snapshot.Point) []lsDiskView {
	list := []lsDiskView{}
	for _, disk := range p.Disks {
		_, d, err := openVolumes(v, p, disk.Name)
		content := ""
		if err != nil {
			content = "unreadable: " + err.Error()
		} else {
			content = diskContent(d)
		}
		list = append(list, lsDiskView{Name: disk.Name, Size: disk.Size, Content: content})
	}
	return list
}

// partitionView is one partition or LVM logical volume as ls and show
// print it.
type partitionView struct {
	Name       string `json:"name"`   // partN, or VG-LV
	Number     int    `json:"number"` // 0 for an LV
	Start      int64  `json:"start"`  // -1 for an LV: its extents lie anywhere
	Size       int64  `json:"size"`
	Type       string `json:"type"`            // partition type, or "LVM linear", "LVM thin", ...
	Label      string `json:"label,omitempty"` // GPT partition name
	VG         string `json:"vg,omitempty"`
	LV         string `json:"lv,omitempty"`
	Filesystem string `json:"filesystem,omitempty"`
	// Content is what a volume that is no filesystem holds, when known:
	// "swap (UUID ...)", "LUKS2 (UUID ...)", "LVM2 PV (UUID ..., VG vg0)".
	Content string `json:"content,omitempty"`
	Error   string `json:"error,omitempty"` // why the filesystem is not readable
	// MissingPV says Error is a PV that lies on another disk, not damage.
	MissingPV bool `json:"missing_pv,omitempty"`
}

func newPartitionViews(d *volume.Disk) []partitionView {
	out := []partitionView{}
	for _, vol := range d.Volumes {
		if vol.Partition == nil && vol.LV == nil {
			continue
		}
		pv := partitionView{Name: vol.Name, Start: vol.Start, Size: vol.Size, Type: volumeType(vol)}
		if p := vol.Partition; p != nil {
			pv.Number, pv.Label = p.Number, p.Name
		} else {
			pv.VG, pv.LV = vol.LV.VG.Name, vol.LV.Name
		}
		if _, err := vol.FS(); err == nil {
			pv.Filesystem = vol.Type()
		} else if errors.Is(err, volume.ErrNoFilesystem) {
			if c := vol.Content(); c != pv.Type {
				pv.Content = c
			}
		} else {
			pv.Error, pv.MissingPV = err.Error(), errors.Is(err, lvm.ErrMissingPV)
		}
		out = append(out, pv)
	}
	return out
}

// fsColumn is the FILESYSTEM column of a partition.
func (pv partitionView) fsColumn() string {
	switch {
	case pv.Filesystem != "":
		return pv.Filesystem
	case pv.MissingPV:
		return "unreadable: " + pv.Error
	case pv.Error != "":
		return "damaged: " + pv.Error
	case pv.Content != "":
		return "not readable: " + pv.Content
	}
	return "not readable"
}

func printPartitions(w io.Writer, list []partitionView, indent string) error {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "%sPART\tSTART\tSIZE\tTYPE\tNAME\tFILESYSTEM\n", indent)
	for _, p := range list {
		start := strconv.FormatInt(p.Start, 10)
		if p.Start < 0 {
			start = "-"
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\t%s\n", indent, printable(p.Name), start, bytesIEC(p.Size), p.Type, printable(p.Label), p.fsColumn())
	}
	return tw.Flush()
}

// printable is s as a listing shows it. A name read from a guest (a
// file's name, a symlink's target, a partition's label) may hold a
// newline, which would make one entry look like two, a tab, which
// would shift the columns, or an escape sequence, which the terminal
// would obey. Such a name, one that is not UTF-8, and one that starts
// with a quote are shown quoted with Go's escapes ("a\nb"); every
// other name as it is.
func printable(s string) string {
	if !utf8.ValidString(s) || strings.HasPrefix(s, `"`) {
		return strconv.Quote(s)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}
