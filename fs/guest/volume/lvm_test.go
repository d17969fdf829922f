package volume

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/fs/guest/lvm"
	"github.com/cairn-backup/cairn/fs/guest/lvm/lvmtest"
)

const mib = 1 << 20

// lvmDisk is the VG "my-vg" over two 24 MiB PVs with 1 MiB extents: LVs
// "lin-ear" (linear on pv0), "str-ipe" (2 stripes of 64 KiB, one on
// each PV) and "multi" (a segment on each PV), 6 MiB each.
func lvmDisk() lvmtest.VG {
	pv := func(i int) lvmtest.PV {
		return lvmtest.PV{ID: lvmtest.ID(fmt.Sprint("vol-pv", i)), Device: fmt.Sprintf("/dev/vda%d", 2*i+1),
			DevSize: 24 * mib, PEStart: mib, PECount: 23}
	}
	st := func(pv int, ext int64) lvmtest.Stripe { return lvmtest.Stripe{PV: pv, Extent: ext} }
	return lvmtest.VG{Name: "my-vg", ID: lvmtest.ID("vol-vg"), Seqno: 4, ExtentSize: mib,
		PVs: []lvmtest.PV{pv(0), pv(1)},
		LVs: []lvmtest.LV{
			{Name: "lin-ear", Segments: []lvmtest.Segment{{Count: 6, Stripes: []lvmtest.Stripe{st(0, 2)}}}},
			{Name: "str-ipe", Segments: []lvmtest.Segment{{Count: 6, StripeSize: 64 << 10,
				Stripes: []lvmtest.Stripe{st(0, 10), st(1, 0)}}}},
			{Name: "multi", Segments: []lvmtest.Segment{{Count: 2, Stripes: []lvmtest.Stripe{st(1, 5)}},
				{Start: 2, Count: 4, Stripes: []lvmtest.Stripe{st(0, 14)}}}},
		}}
}

// lvByteAt is where byte off of LV name lies: PV index and byte offset
// in the PV, computed from the description as dm-linear and dm-stripe
// lay LVs out (independently of the reader).
func lvByteAt(vg lvmtest.VG, name string, off int64) (int, int64) {
	for _, lv := range vg.LVs {
		if lv.Name != name {
			continue
		}
		for _, s := range lv.Segments {
			o := off - s.Start*vg.ExtentSize
			if o < 0 || o >= s.Count*vg.ExtentSize {
				continue
			}
			st, at := s.Stripes[0], o
			if n := int64(len(s.Stripes)); n > 1 {
				chunk := o / s.StripeSize
				st, at = s.Stripes[chunk%n], chunk/n*s.StripeSize+o%s.StripeSize
			}
			return st.PV, vg.PVs[st.PV].PEStart + st.Extent*vg.ExtentSize + at
		}
	}
	panic("no such byte " + name)
}

// writeLVM writes vg's PVs into the disk file at the byte offsets pvAt,
// and img into each LV named in lvs (sector by sector, by lvByteAt).
func writeLVM(t *testing.T, disk string, vg lvmtest.VG, pvAt []int64, img []byte, lvs ...string) {
	t.Helper()
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ws []io.WriterAt
	for _, at := range pvAt {
		ws = append(ws, io.NewOffsetWriter(f, at))
	}
	if err := vg.WriteAll(ws); err != nil {
		t.Fatal(err)
	}
	for _, name := range lvs {
		for off := int64(0); off < int64(len(img)); off += 512 {
			if allZero(img[off : off+512]) {
				continue
			}
			pv, at := lvByteAt(vg, name, off)
			if _, err := f.WriteAt(img[off:off+512], pvAt[pv]+at); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func allZero(b []byte) bool { return bytes.Count(b, []byte{0}) == len(b) }

// ext4Image is a 6 MiB ext4 made by mkfs.ext4 -d from the tree image()
// uses, with a 1 MiB file of pseudo-random bytes, so it spans stripes.
func ext4Image(t *testing.T) (img []byte, big []byte) {
	t.Helper()
	needTool(t, "mkfs.ext4")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc/hostname"), []byte("web01\n"), 0o644)
	big = make([]byte, mib)
	for i := range big {
		big[i] = byte(i*7 + i>>11)
	}
	os.WriteFile(filepath.Join(tree, "big"), big, 0o644)
	p := filepath.Join(dir, "fs.img")
	run(t, "mkfs.ext4", "-q", "-F", "-d", tree, p, "6M")
	img, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return img, big
}

func readFile(t *testing.T, d *Disk, p string) []byte {
	t.Helper()
	_, fsys, ino, err := d.Resolve(p, true)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	a, err := fsys.Stat(ino)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, a.Size)
	if n, err := fsys.ReadAt(ino, b, 0); n != len(b) && err != nil {
		t.Fatalf("%s: read %d, %v", p, n, err)
	}
	return b
}

// An ext4 in linear, striped and two-segment LVs over two PV partitions
// of a GPT disk, beside a plain ext4 partition: each LV is a volume
// named as device-mapper names it, its bytes are the filesystem's and
// its files read.
func TestLVMPartitions(t *testing.T) {
	needTool(t, "sgdisk")
	img, big := ext4Image(t)
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	run(t, "truncate", "-s", "64M", disk)
	run(t, "sgdisk", "-n1:1M:+24M", "-t1:8e00", "-n2:0:+8M", "-n3:0:+24M", "-t3:8e00", disk)
	plain, _ := image(t, "mkfs.ext4")
	run(t, "dd", "if="+plain.Name(), "of="+disk, "bs=1M", "seek=25", "conv=notrunc,sparse", "status=none")
	vg := lvmDisk()
	writeLVM(t, disk, vg, []int64{1 * mib, 33 * mib}, img, "lin-ear", "str-ipe", "multi")

	d := openDisk(t, disk)
	if len(d.LVMErrs) != 0 || len(d.VGs) != 1 {
		t.Fatalf("LVM: %v, %d VGs", d.LVMErrs, len(d.VGs))
	}
	var names []string
	for _, v := range d.Volumes {
		names = append(names, v.Name+"="+v.Type())
	}
	if got := strings.Join(names, " "); got != "part1= part2=ext4 part3= my--vg-lin--ear=ext4 my--vg-str--ipe=ext4 my--vg-multi=ext4" {
		t.Errorf("volumes: %s", got)
	}
	pvContent := fmt.Sprintf("LVM2 PV (UUID %s, VG my-vg)", lvmtest.Dashed(vg.PVs[0].ID))
	if v := d.Volume("part1"); v.Content() != pvContent {
		t.Errorf("part1: %q, want %q", v.Content(), pvContent)
	}
	for _, name := range []string{"my--vg-lin--ear", "my--vg-str--ipe", "my--vg-multi"} {
		v := d.Volume(name)
		if v.LV == nil || v.Partition != nil || v.Start != -1 || v.Size != 6*mib {
			t.Fatalf("%s: %+v", name, v)
		}
		raw := make([]byte, v.Size)
		if n, err := v.Reader().ReadAt(raw, 0); n != len(raw) || err != nil {
			t.Fatalf("%s: raw read %d, %v", name, n, err)
		}
		if !bytes.Equal(raw, img) {
			t.Errorf("%s: raw bytes differ from the filesystem image", name)
		}
		if got := readFile(t, d, name+"/etc/hostname"); string(got) != "web01\n" {
			t.Errorf("%s: hostname %q", name, got)
		}
		if got := readFile(t, d, name+"/big"); !bytes.Equal(got, big) {
			t.Errorf("%s: big differs", name)
		}
		// DiskExtent places the LV's first bytes where they are written.
		lvName := strings.ReplaceAll(strings.TrimPrefix(name, "my--vg-"), "--", "-")
		pv, at := lvByteAt(vg, lvName, 0)
		diskOff, n, hole, err := v.DiskExtent(0)
		if want := []int64{1 * mib, 33 * mib}[pv] + at; diskOff != want || n <= 0 || hole || err != nil {
			t.Errorf("%s: DiskExtent(0) = %d %d %v %v, want %d", name, diskOff, n, hole, err, want)
		}
	}
	mustRead(t, d, "part2/etc/hostname", "web01\n")
}

// A PV whose VG has another PV on another disk: the LVs on it alone
// read, those touching the other one are listed with an error naming
// the missing PV.
func TestLVMMissingPV(t *testing.T) {
	needTool(t, "sgdisk")
	img, _ := ext4Image(t)
	disk := filepath.Join(t.TempDir(), "disk.img")
	run(t, "truncate", "-s", "32M", disk)
	run(t, "sgdisk", "-n1:1M:+24M", "-t1:8e00", disk)
	vg := lvmDisk()
	// pv1 goes to a scratch file: "another disk".
	other := filepath.Join(t.TempDir(), "other.img")
	run(t, "truncate", "-s", "64M", other)
	f, _ := os.OpenFile(disk, os.O_RDWR, 0)
	o, _ := os.OpenFile(other, os.O_RDWR, 0)
	if err := vg.WriteAll([]io.WriterAt{io.NewOffsetWriter(f, mib), o}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	o.Close()
	writeLVMData(t, disk, vg, mib, img, "lin-ear")
	d := openDisk(t, disk)
	if len(d.Volumes) != 4 {
		t.Fatalf("%d volumes", len(d.Volumes))
	}
	mustRead(t, d, "my--vg-lin--ear/etc/hostname", "web01\n")
	for _, name := range []string{"my--vg-str--ipe", "my--vg-multi"} {
		v := d.Volume(name)
		_, err := v.FS()
		if !errors.Is(err, lvm.ErrMissingPV) || errors.Is(err, ErrNoFilesystem) ||
			!strings.Contains(err.Error(), lvmtest.Dashed(vg.PVs[1].ID)) || !strings.Contains(err.Error(), "/dev/vda3") {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := v.Reader().ReadAt(make([]byte, 512), 0); !errors.Is(err, lvm.ErrMissingPV) {
			t.Errorf("%s: raw read: %v", name, err)
		}
		t.Log(err)
	}
}

// writeLVMData writes img into the LVs on pv0 only, pv0 being at pvAt.
func writeLVMData(t *testing.T, disk string, vg lvmtest.VG, pvAt int64, img []byte, lvs ...string) {
	t.Helper()
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, name := range lvs {
		for off := int64(0); off < int64(len(img)); off += 512 {
			if pv, at := lvByteAt(vg, name, off); pv == 0 {
				f.WriteAt(img[off:off+512], pvAt+at)
			}
		}
	}
}

// A whole disk that is a PV (no partition table): its LVs are the
// volumes, and Content says what the disk is.
func TestLVMWholeDisk(t *testing.T) {
	img, _ := ext4Image(t)
	disk := filepath.Join(t.TempDir(), "disk.img")
	run(t, "truncate", "-s", "24M", disk)
	vg := lvmDisk()
	vg.PVs = vg.PVs[:1]
	vg.LVs = vg.LVs[:1]
	writeLVM(t, disk, vg, []int64{0}, img, "lin-ear")
	d := openDisk(t, disk)
	if d.Bare || d.Table.Kind != "" || len(d.Volumes) != 1 || d.Volumes[0].Name != "my--vg-lin--ear" ||
		!strings.HasPrefix(d.Content, "LVM2 PV (UUID "+lvmtest.Dashed(vg.PVs[0].ID)) {
		t.Fatalf("bare %v, kind %q, content %q, %d volumes", d.Bare, d.Table.Kind, d.Content, len(d.Volumes))
	}
	mustRead(t, d, "my--vg-lin--ear/etc/hostname", "web01\n")
	if v, rest := d.Split("/my--vg-lin--ear/etc"); v != "my--vg-lin--ear" || rest != "etc" {
		t.Errorf("split: %q %q", v, rest)
	}
}

// A thin pool is listed as holding no filesystem of its own.
func TestLVMThinPoolListed(t *testing.T) {
	disk := filepath.Join(t.TempDir(), "disk.img")
	run(t, "truncate", "-s", "24M", disk)
	vg := lvmDisk()
	vg.PVs = vg.PVs[:1]
	vg.LVs = []lvmtest.LV{
		{Name: "pool", Segments: []lvmtest.Segment{{Count: 4, Type: "thin-pool", Lines: []string{
			`metadata = "pool_tmeta"`, `pool = "pool_tdata"`, "transaction_id = 0", "chunk_size = 128"}}}},
		{Name: "pool_tmeta", Hidden: true, Segments: []lvmtest.Segment{{Count: 1, Stripes: []lvmtest.Stripe{{PV: 0}}}}},
		{Name: "pool_tdata", Hidden: true, Segments: []lvmtest.Segment{{Count: 4, Stripes: []lvmtest.Stripe{{PV: 0, Extent: 1}}}}},
	}
	writeLVM(t, disk, vg, []int64{0}, nil)
	d := openDisk(t, disk)
	if len(d.Volumes) != 1 || d.Volumes[0].Name != "my--vg-pool" {
		t.Fatalf("%d volumes", len(d.Volumes))
	}
	v := d.Volumes[0]
	_, err := v.FS()
	if !errors.Is(err, ErrNoFilesystem) || !errors.Is(err, lvm.ErrUnsupported) || v.Content() != "LVM thin pool" {
		t.Errorf("pool: %q, %v", v.Content(), err)
	}
	if w := v.TakeWarning(); w == nil || !strings.Contains(w.Error(), "thin pool") {
		t.Errorf("warning %v", w)
	}
}

// A thin LV over a pool whose metadata thin_restore wrote: its ext4
// reads, a chunk never written is a hole on no disk, and damaged pool
// metadata is the volume's error (not "no filesystem").
func TestLVMThin(t *testing.T) {
	needTool(t, "thin_restore", "thin_check")
	const chunk = 64 << 10
	img, big := ext4Image(t)
	dir := t.TempDir()
	// Non-zero chunks of the image go to data chunks in reverse order.
	var xml strings.Builder
	xml.WriteString(`<superblock uuid="" time="0" transaction="1" data_block_size="128" nr_data_blocks="128">` + "\n")
	xml.WriteString(`<device dev_id="1" mapped_blocks="0" transaction="0" creation_time="0" snap_time="0">` + "\n")
	where := map[int64]int64{}
	next := int64(127)
	for c := int64(0); c < int64(len(img))/chunk; c++ {
		if !allZero(img[c*chunk:][:chunk]) {
			where[c] = next
			fmt.Fprintf(&xml, `<single_mapping origin_block="%d" data_block="%d" time="0"/>`+"\n", c, next)
			next--
		}
	}
	xml.WriteString("</device>\n</superblock>\n")
	x := filepath.Join(dir, "pool.xml")
	os.WriteFile(x, []byte(xml.String()), 0o644)
	meta := filepath.Join(dir, "meta")
	run(t, "truncate", "-s", "1M", meta)
	run(t, "thin_restore", "-i", x, "-o", meta)
	run(t, "thin_check", meta)
	metaBytes, _ := os.ReadFile(meta)

	vg := lvmDisk()
	vg.PVs = vg.PVs[:1]
	vg.LVs = []lvmtest.LV{
		{Name: "pool", Segments: []lvmtest.Segment{{Count: 8, Type: "thin-pool", Lines: []string{
			`metadata = "pool_tmeta"`, `pool = "pool_tdata"`, "transaction_id = 1", "chunk_size = 128"}}}},
		{Name: "thin", Segments: []lvmtest.Segment{{Count: 16, Type: "thin", Lines: []string{
			`thin_pool = "pool"`, "transaction_id = 0", "device_id = 1"}}}},
		{Name: "pool_tmeta", Hidden: true, Segments: []lvmtest.Segment{{Count: 1, Stripes: []lvmtest.Stripe{{PV: 0}}}}},
		{Name: "pool_tdata", Hidden: true, Segments: []lvmtest.Segment{{Count: 8, Stripes: []lvmtest.Stripe{{PV: 0, Extent: 1}}}}},
	}
	disk := filepath.Join(dir, "disk.img")
	run(t, "truncate", "-s", "24M", disk)
	writeLVM(t, disk, vg, []int64{0}, metaBytes, "pool_tmeta")
	f, _ := os.OpenFile(disk, os.O_RDWR, 0)
	const tdata = 2 * mib // pe_start + extent 1
	for c, d := range where {
		f.WriteAt(img[c*chunk:][:chunk], tdata+d*chunk)
	}
	f.Close()

	d := openDisk(t, disk)
	v := d.Volume("my--vg-thin")
	if v == nil || v.Type() != "ext4" || v.Size != 16*mib {
		t.Fatalf("thin volume: %+v", v)
	}
	if got := readFile(t, d, "my--vg-thin/big"); !bytes.Equal(got, big) {
		t.Error("big differs")
	}
	if at, n, hole, err := v.DiskExtent(0); at != tdata+where[0]*chunk || n != chunk || hole || err != nil {
		t.Errorf("DiskExtent(0) = %d %d %v %v, want %d", at, n, hole, err, tdata+where[0]*chunk)
	}
	if _, n, hole, err := v.DiskExtent(15*mib + 100); !hole || n != chunk-100 || err != nil {
		t.Errorf("DiskExtent of a chunk never written: %d %v %v", n, hole, err)
	}
	if c := d.Volume("my--vg-pool").Content(); c != "LVM thin pool" {
		t.Errorf("pool: %q", c)
	}

	// Damaged pool metadata: the superblock's checksum.
	f, _ = os.OpenFile(disk, os.O_RDWR, 0)
	f.WriteAt([]byte{0xFF}, mib+100)
	f.Close()
	d = openDisk(t, disk)
	if _, err := d.Volume("my--vg-thin").FS(); !errors.Is(err, lvm.ErrCorrupt) || errors.Is(err, ErrNoFilesystem) {
		t.Errorf("damaged pool: %v", err)
	}
}
