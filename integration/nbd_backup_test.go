package integration

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/image/nbd/nbdtest"
)

// qsdVM is a qemu-storage-daemon standing in for a running VM: its disk,
// a qcow2 image, takes the "guest's" writes through a writable NBD
// export, and backups read point-in-time views of it the way the
// README's "Backing up running VMs" says: one transaction adds the new
// checkpoint bitmap, freezes a copy of the previous one on the fleecing
// node, and starts the fleecing job, whose node is exported read-only
// with that copy.
type qsdVM struct {
	t    *testing.T
	d    *nbdtest.StorageDaemon
	dir  string
	img  string
	sock string // the NBD server's
	want []byte // the disk as the test wrote it
	rng  *rand.Rand
	n    int // fleecing images made
}

const vmDiskSize = 64 << 20

// newQSDVM makes a sparse 64 MiB qcow2 disk with about 20 MiB of data in
// runs and serves it.
func newQSDVM(t *testing.T) *qsdVM {
	needTool(t, "qemu-storage-daemon", "qemu-img", "qemu-io")
	dir := t.TempDir()
	vm := &qsdVM{t: t, dir: dir, img: filepath.Join(dir, "vda.qcow2"), sock: filepath.Join(dir, "nbd.sock"),
		want: make([]byte, vmDiskSize), rng: rand.New(rand.NewSource(17))}
	for _, r := range [][2]int{{0, 4 << 20}, {6 << 20, 3 << 20}, {20 << 20, 8 << 20}, {40<<20 + 64<<10, 1 << 20}, {60 << 20, 4 << 20}} {
		vm.rng.Read(vm.want[r[0] : r[0]+r[1]])
	}
	raw := filepath.Join(dir, "init.raw")
	if err := os.WriteFile(raw, vm.want, 0o644); err != nil {
		t.Fatal(err)
	}
	sh(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, vm.img)
	os.Remove(raw)
	vm.d = nbdtest.StartStorageDaemon(t, dir,
		"--blockdev", "driver=file,node-name=file0,filename="+vm.img,
		"--blockdev", "driver=qcow2,node-name=fmt0,file=file0",
		"--nbd-server", "addr.type=unix,addr.path="+vm.sock)
	vm.qmp("block-export-add", map[string]any{"type": "nbd", "id": "guest", "node-name": "fmt0", "name": "guest", "writable": true})
	return vm
}

func (vm *qsdVM) qmp(cmd string, args map[string]any) {
	vm.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var a any
	if args != nil {
		a = args
	}
	if err := vm.d.Execute(ctx, cmd, a, nil); err != nil {
		vm.t.Fatalf("%v\n%s", err, vm.d.Stderr())
	}
}

// uri is the NBD URI of export on the daemon, with extra parameters.
func (vm *qsdVM) uri(export, params string) string {
	u := "nbd+unix:///" + export + "?socket=" + vm.sock
	if params != "" {
		u += "&" + params
	}
	return u
}

// write has the guest write n random bytes at off (64 KiB aligned), or
// zeros with qemu-io's write -z when zero is set.
func (vm *qsdVM) write(off, n int, zero bool) {
	vm.t.Helper()
	cmd := fmt.Sprintf("write -z %d %d", off, n)
	if zero {
		clear(vm.want[off : off+n])
	} else {
		vm.rng.Read(vm.want[off : off+n])
		f := filepath.Join(vm.dir, "w.bin")
		if err := os.WriteFile(f, vm.want[off:off+n], 0o644); err != nil {
			vm.t.Fatal(err)
		}
		cmd = fmt.Sprintf("write -s %s %d %d", f, off, n)
	}
	sh(vm.t, "qemu-io", "-f", "raw", "-c", cmd, vm.uri("guest", ""))
}

// startBackup runs the transaction of a backup: adds bitmap add (if
// any) to the drive, and with exportOld a disabled copy of old on the
// fleecing node, atomically with the fleecing job; then exports the
// frozen view as "vda", with that copy of old when exportOld. It
// returns the disk's bytes at that moment.
func (vm *qsdVM) startBackup(add, old string, exportOld bool) []byte {
	vm.t.Helper()
	vm.n++
	fleece := fmt.Sprintf("fleece%d", vm.n)
	file := filepath.Join(vm.dir, fleece+".qcow2")
	sh(vm.t, "qemu-img", "create", "-q", "-f", "qcow2", file, strconv.Itoa(vmDiskSize))
	vm.qmp("blockdev-add", map[string]any{"driver": "qcow2", "node-name": fleece,
		"file": map[string]any{"driver": "file", "filename": file}, "backing": "fmt0"})
	var actions []map[string]any
	act := func(typ string, data map[string]any) {
		actions = append(actions, map[string]any{"type": typ, "data": data})
	}
	if add != "" {
		act("block-dirty-bitmap-add", map[string]any{"node": "fmt0", "name": add, "persistent": true})
	}
	if exportOld {
		act("block-dirty-bitmap-add", map[string]any{"node": fleece, "name": old, "disabled": true})
		act("block-dirty-bitmap-merge", map[string]any{"node": fleece, "target": old,
			"bitmaps": []map[string]any{{"node": "fmt0", "name": old}}})
	}
	act("blockdev-backup", map[string]any{"job-id": fleece, "device": "fmt0", "target": fleece, "sync": "none"})
	vm.qmp("transaction", map[string]any{"actions": actions})
	exp := map[string]any{"type": "nbd", "id": "backup", "node-name": fleece, "name": "vda", "writable": false}
	if exportOld {
		exp["bitmaps"] = []string{old}
	}
	vm.qmp("block-export-add", exp)
	return bytes.Clone(vm.want)
}

// endBackup takes the export and the fleecing job down, and removes the
// bitmap remove if given.
func (vm *qsdVM) endBackup(remove string) {
	vm.t.Helper()
	fleece := fmt.Sprintf("fleece%d", vm.n)
	vm.qmp("block-export-del", map[string]any{"id": "backup"})
	vm.qmp("block-job-cancel", map[string]any{"device": fleece})
	// The export and the job end asynchronously: the node is free once
	// they have.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		err := vm.d.Execute(ctx, "blockdev-del", map[string]any{"node-name": fleece}, nil)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			vm.t.Fatalf("blockdev-del %s: %v", fleece, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if remove != "" {
		vm.qmp("block-dirty-bitmap-remove", map[string]any{"node": "fmt0", "name": remove})
	}
}

// rchar is what the daemon has read so far with read syscalls (its image
// files and sockets): the outside count of what a backup made it read.
func (vm *qsdVM) rchar() int64 {
	vm.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", vm.d.Pid()))
	if err != nil {
		vm.t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "rchar: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				vm.t.Fatal(err)
			}
			return n
		}
	}
	vm.t.Fatalf("no rchar in /proc/PID/io: %s", b)
	return 0
}

// dataBytes counts the bytes of the blocks of bs bytes that hold a
// non-zero byte of disk (the written data is random, so these are the
// blocks that overlap allocated clusters), limited to blocks for which
// in is true (nil: all).
func dataBytes(disk []byte, bs int, in func(off int) bool) int64 {
	var n int64
	for off := 0; off < len(disk); off += bs {
		b := disk[off:min(off+bs, len(disk))]
		if (in == nil || in(off)) && !bytes.Equal(b, make([]byte, len(b))) {
			n += int64(len(b))
		}
	}
	return n
}

// nbdPoint is what cairn backup --json says of the fields checked here.
type nbdPoint struct {
	Point      string `json:"point"`
	Read       int64  `json:"read"`
	Allocated  int64  `json:"allocated"`
	BitmapUsed bool   `json:"bitmap_used"`
	Disks      []struct {
		Name         string `json:"name"`
		Read         int64  `json:"read"`
		ReadMode     string `json:"read_mode"`
		Bitmap       string `json:"bitmap"`
		BitmapUnused string `json:"bitmap_unused"`
		Checkpoint   string `json:"checkpoint"`
	} `json:"disks"`
}

// backup runs cairn backup --json of vda from the export and returns
// the point, stderr and what the daemon read meanwhile.
func (vm *qsdVM) backup(vault, params string) (nbdPoint, string, int64) {
	vm.t.Helper()
	before := vm.rchar()
	r := cairn(vm.t, vault, "backup", "--name", "vm1", "--json", "vda="+vm.uri("vda", params))
	read := vm.rchar() - before
	if r.code != 0 {
		vm.t.Fatalf("backup %s: exit %d\n%s", params, r.code, r.stderr)
	}
	var p nbdPoint
	mustJSON(vm.t, r.stdout, &p)
	if len(p.Disks) != 1 {
		vm.t.Fatalf("point %+v", p)
	}
	return p, r.stderr, read
}

// restored restores the point's disk to a file and returns its bytes.
func restored(t *testing.T, vault, point string) (string, []byte) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "vda.raw")
	mustCairn(t, vault, "restore", point, out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return out, b
}

// The README's flow against a daemon whose disk keeps taking writes: a
// full backup skips the holes and holds the disk as it was at its
// transaction; an incremental from the dirty bitmap reads only the
// changed blocks (cairn's count, and the daemon's own) and restores
// identical to the disk; a bitmap the export lacks, one whose
// checkpoint is not the latest point's, or one older than the latest
// point falls back to a full read, says so, and still gives the disk.
func TestNBDBackupFromDirtyBitmap(t *testing.T) {
	vm := newQSDVM(t)
	vault := filepath.Join(t.TempDir(), "vault")
	mustCairn(t, vault, "init") // 256 KiB blocks
	const bs = 256 << 10

	// Full, starting checkpoint c1. The guest writes while the backup
	// runs: the point must not see it, the next one must.
	state := vm.startBackup("c1", "", false)
	vm.write(30<<20, 64<<10, false)
	p1, _, qsdRead := vm.backup(vault, "checkpoint=c1")
	vm.endBackup("")
	d := p1.Disks[0]
	wantRead := dataBytes(state, bs, nil)
	if d.Read != wantRead || d.ReadMode != "full" || d.Checkpoint != "c1" || p1.BitmapUsed {
		t.Fatalf("full point: %+v, want %d bytes read in full, checkpoint c1", p1, wantRead)
	}
	t.Logf("full backup: cairn read %d bytes, the daemon %d, of a %d-byte disk", d.Read, qsdRead, vmDiskSize)
	// Holes are skipped: the daemon read about the data, not 64 MiB.
	if qsdRead < wantRead*9/10 || qsdRead > wantRead*12/10+1<<20 {
		t.Errorf("full backup: the daemon read %d bytes for %d of data in a disk of %d", qsdRead, wantRead, vmDiskSize)
	}
	if _, got := restored(t, vault, p1.Point); !bytes.Equal(got, state) {
		t.Fatal("the full point is not the disk as it was at its transaction")
	}

	// About 2% of the disk changes: scattered 64 KiB writes (one in a
	// hole), and a 256 KiB block zeroed.
	var dirty []int // block offsets
	for _, off := range []int{100 << 10 &^ (64<<10 - 1), 2 << 20, 7<<20 + 128<<10, 13 << 20, 21 << 20, 26<<20 + 192<<10, 61 << 20} {
		vm.write(off, 64<<10, false)
		dirty = append(dirty, off/bs*bs)
	}
	vm.write(22<<20, 256<<10, true)
	dirty = append(dirty, 30<<20, 22<<20) // the write during the full backup, and the zeroed block
	isDirty := func(off int) bool {
		for _, o := range dirty {
			if o == off {
				return true
			}
		}
		return false
	}
	// A backup that never ran (or failed): its new bitmap c2x belongs to
	// no point and goes. c1 still records, so the retry may read from
	// it, including what the guest wrote meanwhile.
	vm.startBackup("c2x", "c1", true)
	vm.write(14<<20, 64<<10, false)
	vm.endBackup("c2x")
	dirty = append(dirty, 14<<20)
	state = vm.startBackup("c2", "c1", true)
	p2, _, qsdRead := vm.backup(vault, "bitmap=c1&checkpoint=c2")
	vm.endBackup("c1")
	d = p2.Disks[0]
	wantRead = dataBytes(state, bs, isDirty)
	if d.ReadMode != "bitmap" || d.Bitmap != "c1" || d.Checkpoint != "c2" || !p2.BitmapUsed || d.BitmapUnused != "" {
		t.Fatalf("bitmap point: %+v", p2)
	}
	t.Logf("bitmap backup: cairn read %d bytes, the daemon %d; dirty blocks with data %d", d.Read, qsdRead, wantRead)
	if d.Read != wantRead {
		t.Errorf("bitmap backup read %d bytes, want %d: the dirty blocks that hold data", d.Read, wantRead)
	}
	if qsdRead > wantRead*12/10+1<<20 {
		t.Errorf("bitmap backup: the daemon read %d bytes for %d dirty", qsdRead, wantRead)
	}
	if _, got := restored(t, vault, p2.Point); !bytes.Equal(got, state) {
		t.Fatal("the bitmap point restores differently from the disk")
	}
	show := mustCairn(t, vault, "show", p2.Point)
	if !strings.Contains(show, "from dirty bitmap c1") || !strings.Contains(show, "checkpoint c2") {
		t.Errorf("show does not say how the point was read:\n%s", show)
	}
	var pts []nbdPoint
	mustJSON(t, mustCairn(t, vault, "points", "--json", "vm1"), &pts)
	if len(pts) != 2 || pts[0].Disks[0].ReadMode != "full" || pts[1].Disks[0].Bitmap != "c1" {
		t.Errorf("points --json: %+v", pts)
	}

	// Lost bitmap: the export does not offer c2. A full read, said.
	vm.write(8<<20, 64<<10, false)
	state = vm.startBackup("c3", "c2", false)
	p3, stderr, qsdRead := vm.backup(vault, "bitmap=c2&checkpoint=c3")
	vm.endBackup("c2")
	checkFallback(t, vault, p3, stderr, qsdRead, state, "the source does not offer it")

	// A point made in between without a checkpoint: c3 may miss what
	// changed before that point, so it is not trusted after it.
	vm.write(9<<20, 64<<10, false)
	vm.startBackup("", "", false)
	mustCairn(t, vault, "backup", "--name", "vm1", "vda="+vm.uri("vda", ""))
	vm.endBackup("")
	vm.write(10<<20, 64<<10, false)
	state = vm.startBackup("c4", "c3", true)
	p5, stderr, qsdRead := vm.backup(vault, "bitmap=c3&checkpoint=c4")
	vm.endBackup("")
	checkFallback(t, vault, p5, stderr, qsdRead, state, "recorded no checkpoint for disk vda")

	// A bitmap older than the latest point, which stopped recording
	// since (as a flow that disables old bitmaps leaves them): what
	// changed after is only in c4. Trusting c3 would miss this write.
	vm.qmp("block-dirty-bitmap-disable", map[string]any{"node": "fmt0", "name": "c3"})
	vm.write(11<<20, 64<<10, false)
	state = vm.startBackup("c5", "c3", true)
	p6, stderr, qsdRead := vm.backup(vault, "bitmap=c3&checkpoint=c5")
	vm.endBackup("c3")
	checkFallback(t, vault, p6, stderr, qsdRead, state, "recorded checkpoint c4 for disk vda, not c3")

	// The last point against the image itself, by qemu-img, once the
	// daemon has written everything back.
	vm.qmp("quit", nil)
	for deadline := time.Now().Add(10 * time.Second); !vm.d.Exited(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("qemu-storage-daemon did not quit")
		}
	}
	out, _ := restored(t, vault, p6.Point)
	sh(t, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", out, vm.img)
}

// checkFallback checks a backup that was given a bitmap it must not
// trust: read in full, a note on stderr and in the JSON, the disk as it
// was.
func checkFallback(t *testing.T, vault string, p nbdPoint, stderr string, qsdRead int64, state []byte, why string) {
	t.Helper()
	d := p.Disks[0]
	want := dataBytes(state, 256<<10, nil)
	if d.ReadMode != "full" || p.BitmapUsed || d.Read != want || !strings.Contains(d.BitmapUnused, why) {
		t.Errorf("%s: %+v, want a full read of %d bytes, unused bitmap saying %q", p.Point, d, want, why)
	}
	if !strings.Contains(stderr, "cairn: note: disk vda: bitmap ") || !strings.Contains(stderr, why) || strings.Count(stderr, "\n") != 1 {
		t.Errorf("%s: stderr does not say the bitmap was not used, on one line:\n%s", p.Point, stderr)
	}
	if qsdRead < want*9/10 {
		t.Errorf("%s: the daemon read %d bytes, a full read %d", p.Point, qsdRead, want)
	}
	if _, got := restored(t, vault, p.Point); !bytes.Equal(got, state) {
		t.Errorf("%s restores differently from the disk", p.Point)
	}
}
