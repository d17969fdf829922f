package snapshot

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/chunkstore/storage"
	"github.com/cairn-backup/cairn/index"
)

func TestRecordRoundTripAndDamage(t *testing.T) {
	p := &Point{Version: pointVersion, Resource: "web01", ID: "20261121T100000Z", Time: time.Unix(1e9, 0).UTC(),
		Disks: []Disk{{Name: "vda", Size: 1 << 20, BlockSize: 64 << 10, Pages: []index.Hash{{1}}}}}
	b, err := encodeRecord(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeRecord(b, false)
	if err != nil || got.Name() != p.Name() || got.Disks[0].Size != p.Disks[0].Size {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	// Any changed byte, a size digit above all, is an error.
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		if _, err := decodeRecord(c, false); err == nil {
			t.Fatalf("byte %d flipped: the record still decodes", i)
		}
	}
	if _, err := decodeRecord(b[:len(b)-1], false); !errors.Is(err, ErrBadRecord) {
		t.Fatalf("truncated record: %v", err)
	}
	if _, err := decodeRecord([]byte(`{"version":1}`), false); err == nil {
		t.Fatal("a bare manifest is accepted outside a format 1 vault")
	}
}

// testdataVault unpacks a vault made by an older cairn (testdata) into a
// temporary directory.
func testdataVault(t *testing.T, name string) string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name+".tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			os.MkdirAll(p, 0o700)
		case tar.TypeReg:
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return filepath.Join(dir, "vault")
}

// expectedDisks reads "sha256 POINT DISK" lines.
func expectedDisks(t *testing.T, name string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".sha256"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		out[f[1]+":"+f[2]] = f[0]
	}
	return out
}

// checkRestores restores every disk of every point and compares it with
// want (POINT:DISK → sha256).
func checkRestores(t *testing.T, v *Vault, want map[string]string) {
	t.Helper()
	points, err := v.Points("")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range points {
		for _, d := range p.Disks {
			h := sha256.Sum256(restoreAll(t, v, p, d.Name))
			key := p.Name() + ":" + d.Name
			if w, ok := want[key]; !ok || hex.EncodeToString(h[:]) != w {
				t.Errorf("%s restores to %x, want %s", key, h, w)
			}
			n++
		}
	}
	if n != len(want) {
		t.Errorf("%d disks restored, want %d", n, len(want))
	}
}

// TestUpgradeFormat1 opens a vault written by the previous release: it
// is upgraded in place, and every disk restores byte for byte, before
// and after a reopen and after its index is lost and rebuilt.
func TestUpgradeFormat1(t *testing.T) {
	dir := testdataVault(t, "vault-format1")
	want := expectedDisks(t, "vault-format1")
	v, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Config().Format != FormatVersion || v.Config().ID == "" {
		t.Errorf("config after upgrade: %+v", v.Config())
	}
	checkRestores(t, v, want)
	v.Close()
	for name := range want {
		point, _, _ := strings.Cut(name, ":")
		if _, err := os.Stat(filepath.Join(dir, "points", point)); err != nil {
			t.Errorf("no record of %s in storage: %v", point, err)
		}
	}
	if err := os.RemoveAll(filepath.Join(dir, "index")); err != nil {
		t.Fatal(err)
	}
	if _, err := Repair(context.Background(), dir, RepairOptions{}); err != nil {
		t.Fatal(err)
	}
	v, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	checkRestores(t, v, want)
	rep, err := v.Verify(context.Background(), VerifyOptions{Data: true})
	if err != nil || !rep.OK() {
		t.Fatalf("verify after upgrade and repair: %v %+v", err, rep.Problems)
	}
}

// threePoints makes a vault with points of two resources (one with two
// disks) and returns its directory and what each disk holds.
func threePoints(t *testing.T) (string, map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	if err := Init(dir, Config{BlockSize: 64 << 10}, time.Now()); err != nil {
		t.Fatal(err)
	}
	v, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ctx := context.Background()
	disks := map[string][]byte{}
	backup := func(res string, srcs ...DiskSource) {
		t.Helper()
		p, err := v.Backup(ctx, res, srcs, BackupOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range srcs {
			disks[p.Name()+":"+s.Name] = bytes.Clone(s.Src.(*MemSource).Data)
		}
	}
	a := disk(1, 1<<20)
	backup("web01", DiskSource{Name: "vda", Src: &MemSource{Data: a}})
	copy(a[300<<10:], disk(2, 100<<10))
	backup("web01", DiskSource{Name: "vda", Src: &MemSource{Data: a}})
	backup("db01", DiskSource{Name: "vda", Src: &MemSource{Data: disk(3, 512<<10)}},
		DiskSource{Name: "vdb", Src: &MemSource{Data: a}})
	return dir, disks
}

func checkDisks(t *testing.T, v *Vault, want map[string][]byte) {
	t.Helper()
	for key, data := range want {
		point, disk, _ := strings.Cut(key, ":")
		p, err := v.Resolve(point)
		if err != nil {
			t.Fatalf("%s: %v", point, err)
		}
		if got := restoreAll(t, v, p, disk); !bytes.Equal(got, data) {
			t.Errorf("%s restores differently", key)
		}
	}
}

// TestIndexLossIsNeverAnEmptyVault loses the index in each way a user
// can: every open refuses with ErrNeedsRepair, and a repair brings back
// every point byte for byte.
func TestIndexLossIsNeverAnEmptyVault(t *testing.T) {
	other := t.TempDir()
	if err := Init(other, Config{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		lose func(t *testing.T, dir string)
	}{
		{"index removed", func(t *testing.T, dir string) { os.RemoveAll(filepath.Join(dir, "index")) }},
		{"manifest removed", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "index", "MANIFEST")) }},
		{"index emptied", func(t *testing.T, dir string) {
			os.RemoveAll(filepath.Join(dir, "index"))
			idx, err := index.Open(filepath.Join(dir, "index"), index.Options{Create: true})
			if err != nil {
				t.Fatal(err)
			}
			idx.Close()
		}},
		{"another vault's index", func(t *testing.T, dir string) {
			os.RemoveAll(filepath.Join(dir, "index"))
			if err := os.CopyFS(filepath.Join(dir, "index"), os.DirFS(filepath.Join(other, "index"))); err != nil {
				t.Fatal(err)
			}
		}},
		{"table truncated", func(t *testing.T, dir string) {
			ssts, _ := filepath.Glob(filepath.Join(dir, "index", "*.sst"))
			for _, p := range ssts {
				st, _ := os.Stat(p)
				os.Truncate(p, st.Size()/2)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, want := threePoints(t)
			c.lose(t, dir)
			if _, err := Open(dir, Options{}); !errors.Is(err, ErrNeedsRepair) {
				t.Fatalf("open: %v, want ErrNeedsRepair", err)
			}
			if _, err := Open(dir, Options{ReadOnly: true}); !errors.Is(err, ErrNeedsRepair) {
				t.Fatalf("read-only open: %v, want ErrNeedsRepair", err)
			}
			rep, err := Repair(context.Background(), dir, RepairOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Points != 3 || len(rep.Damaged) != 0 {
				t.Errorf("repair: %+v", rep)
			}
			v, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			checkDisks(t, v, want)
		})
	}
}

// TestCutManifestNeedsRepair cuts the index's MANIFEST after each of its
// changes in turn: Badger opens what is left and deletes the tables the
// MANIFEST no longer names, so the index may hold some points only. No
// open may show a vault with fewer points than storage holds: it refuses
// with ErrNeedsRepair (and a repair brings back every point), or serves
// every point.
func TestCutManifestNeedsRepair(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, Config{BlockSize: 64 << 10}, time.Now()); err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	for i := 0; i < 3; i++ {
		// A session each: every close flushes a table of its own.
		v, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		data := disk(int64(60+i), 256<<10)
		p, err := v.Backup(context.Background(), "vm", []DiskSource{{Name: "vda", Src: &MemSource{Data: data}}}, BackupOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want[p.Name()+":vda"] = data
		if err := v.Close(); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "index", "MANIFEST"))
	if err != nil {
		t.Fatal(err)
	}
	// 8 bytes of magic and version, then changes: length, CRC, data.
	var cuts []int
	for at := 8; at+8 <= len(b); {
		at += 8 + int(binary.BigEndian.Uint32(b[at:]))
		if at < len(b) {
			cuts = append(cuts, at)
		}
	}
	if len(cuts) < 2 {
		t.Fatalf("the MANIFEST (%d bytes) holds %d changes", len(b), len(cuts)+1)
	}
	refused := 0
	for _, cut := range cuts {
		cdir := filepath.Join(t.TempDir(), "vault")
		if err := os.CopyFS(cdir, os.DirFS(dir)); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(filepath.Join(cdir, "index", "MANIFEST"), int64(cut)); err != nil {
			t.Fatal(err)
		}
		v, err := Open(cdir, Options{})
		if err == nil {
			points, _ := v.Points("")
			if len(points) != len(want) {
				t.Errorf("MANIFEST cut at %d of %d: the vault opens with %d points of %d", cut, len(b), len(points), len(want))
			}
			v.Close()
			continue
		}
		if !errors.Is(err, ErrNeedsRepair) {
			t.Fatalf("MANIFEST cut at %d: %v, want ErrNeedsRepair", cut, err)
		}
		refused++
		rep, err := Repair(context.Background(), cdir, RepairOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Points != len(want) || len(rep.Damaged) != 0 {
			t.Errorf("repair: %+v", rep)
		}
		v, err = Open(cdir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		checkDisks(t, v, want)
		v.Close()
	}
	t.Logf("%d cuts, %d refused", len(cuts), refused)
}

// TestCommitIsTheRecord fails the durable write of a point's record: the
// backup fails and the vault has no new point, in storage or index.
func TestCommitIsTheRecord(t *testing.T) {
	dir := t.TempDir()
	if err := Init(dir, Config{BlockSize: 64 << 10}, time.Now()); err != nil {
		t.Fatal(err)
	}
	st, err := storage.NewDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	faulty := storage.NewFaulty(st)
	v, err := Open(dir, Options{Storage: faulty})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ctx := context.Background()
	var src []DiskSource
	for i, rule := range []storage.Rule{
		{Op: storage.OpPut, Kind: storage.Points, Fault: storage.FaultErr(syscall.EIO)},
		{Op: storage.OpPut, Kind: storage.Points, Fault: storage.FaultErr(syscall.ENOSPC)},
		{Op: storage.OpCommit, Kind: storage.Packs, Fault: storage.FaultErr(syscall.EIO)},
		{Op: storage.OpWrite, Kind: storage.Packs, Fault: storage.FaultShortWrite(100, syscall.ENOSPC)},
	} {
		// New bytes each time: blocks a failed backup stored stay, and a
		// rerun would only refer to them.
		src = []DiskSource{{Name: "vda", Src: &MemSource{Data: disk(int64(40+i), 1<<20)}}}
		id := faulty.Add(rule)
		if _, err := v.Backup(ctx, "vm", src, BackupOptions{}); err == nil {
			t.Fatalf("backup with %v on %s %s succeeded", rule.Fault, rule.Op, rule.Kind)
		}
		faulty.Remove(id)
		if ids, _ := v.PointIDs("vm"); len(ids) != 0 {
			t.Fatalf("a failed commit left a point: %v", ids)
		}
		var n int
		st.List(ctx, storage.Points, func(storage.ObjectInfo) error { n++; return nil })
		if n != 0 {
			t.Fatalf("a failed commit left %d records in storage", n)
		}
	}
	p, err := v.Backup(ctx, "vm", src, BackupOptions{})
	if err != nil {
		t.Fatalf("backup once the fault is gone: %v", err)
	}
	if got := restoreAll(t, v, p, ""); !bytes.Equal(got, src[0].Src.(*MemSource).Data) {
		t.Fatal("restore differs")
	}
}

// TestCrashBetweenRecordAndIndex leaves a committed record the index
// never learnt of, and an index entry whose record is gone, as a writer
// killed at those moments does: the next open follows storage.
func TestCrashBetweenRecordAndIndex(t *testing.T) {
	dir, want := threePoints(t)
	v, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	points, _ := v.Points("")
	kept, gone := points[0], points[2]
	// kept: in storage, dropped from the index. gone: the reverse.
	if err := v.idx.DeletePoints([]index.PointKey{{Resource: kept.Resource, ID: kept.ID}}); err != nil {
		t.Fatal(err)
	}
	if err := v.st.Delete(context.Background(), storage.Points, recordName(gone.Resource, gone.ID)); err != nil {
		t.Fatal(err)
	}
	v.closeAll() // the crash: the session stays open
	for k := range want {
		if strings.HasPrefix(k, gone.Name()+":") {
			delete(want, k)
		}
	}
	v, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if got, _ := v.Points(""); len(got) != 2 {
		t.Fatalf("%d points after the reconcile, want 2", len(got))
	}
	checkDisks(t, v, want)
}

// TestDamagedBlockHealedByBackup damages a block: verify names the
// point, the next backup of the same bytes stores a good copy instead of
// referring to the damaged one, and the damaged point is whole again.
func TestDamagedBlockHealedByBackup(t *testing.T) {
	v := damageableVault(t, 64<<10)
	ctx := context.Background()
	data := disk(5, 1<<20)
	p1, err := v.Backup(ctx, "vm", []DiskSource{{Name: "vda", Src: &MemSource{Data: data}}}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	damageBlock(t, v, &p1.Disks[0], 5)
	rep, err := v.Verify(ctx, VerifyOptions{Data: true})
	if err != nil || rep.OK() || len(rep.Damaged) != 1 {
		t.Fatalf("verify --data: %v %+v", err, rep)
	}
	dd := rep.Damaged[0].Disks
	if len(dd) != 1 || dd[0].Disk != "vda" || len(dd[0].Ranges) != 1 || dd[0].Ranges[0] != [2]int64{5 << 16, 6 << 16} {
		t.Fatalf("damage %+v, want vda [327680, 393216)", rep.Damaged[0])
	}
	if d, _ := v.Damage(p1); d == nil {
		t.Fatal("the point is not marked damaged")
	}
	p2, err := v.Backup(ctx, "vm", []DiskSource{{Name: "vda", Src: &MemSource{Data: data}}}, BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p2.Added == 0 {
		t.Fatal("the second backup referred to the damaged block instead of storing it")
	}
	if d, _ := v.Damage(p1); d != nil {
		t.Fatalf("the first point is still damaged: %+v", d)
	}
	for _, p := range []*Point{p1, p2} {
		if got := restoreAll(t, v, p, ""); !bytes.Equal(got, data) {
			t.Fatalf("%s restores differently", p.Name())
		}
	}
	if rep, err := v.Verify(ctx, VerifyOptions{}); err != nil || !rep.OK() {
		t.Fatalf("verify after healing: %v %+v", err, rep.Problems)
	}
}

// TestVerifyNamesEveryPointOfAMissingPack deletes the pack that three
// points share: plain verify names all three, with disks and ranges.
func TestVerifyNamesEveryPointOfAMissingPack(t *testing.T) {
	dir, _ := threePoints(t)
	v, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	// The first backup's pack holds blocks every point uses.
	first, _ := v.Resolve("web01@" + mustIDs(t, v, "web01")[0])
	h, _ := v.blockHash(&first.Disks[0], 0)
	loc, _ := v.idx.Block(h)
	if err := os.Remove(filepath.Join(dir, "packs", loc.Pack.String()[:2], loc.Pack.String()+".pack")); err != nil {
		t.Fatal(err)
	}
	rep, err := v.Verify(context.Background(), VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.DamagedPoints) != 3 || len(rep.Damaged) != 3 {
		t.Fatalf("damaged %v, want all 3 points", rep.DamagedPoints)
	}
	for _, d := range rep.Damaged {
		if len(d.Disks) == 0 || d.Disks[0].Bytes == 0 || len(d.Disks[0].Ranges) == 0 {
			t.Errorf("%s: no disks or ranges named: %+v", d.Point, d)
		}
	}
}

// TestBadRecordIsOneBadPoint damages the index's copy of one point's
// record: the others list and verify, the damaged one is named, and a
// repair reads it again from storage.
func TestBadRecordIsOneBadPoint(t *testing.T) {
	dir, want := threePoints(t)
	v, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	points, _ := v.Points("")
	bad := points[1]
	if err := v.idx.PutPoint(bad.Resource, bad.ID, []byte("CAIRNPNT garbage")); err != nil {
		t.Fatal(err)
	}
	if got, err := v.Points(""); err != nil || len(got) != 2 {
		t.Fatalf("points with one bad record: %d, %v", len(got), err)
	}
	if br, _ := v.BadRecords(); len(br) != 1 || br[0].Point != bad.Name() {
		t.Fatalf("bad records %+v", br)
	}
	rep, err := v.Verify(context.Background(), VerifyOptions{})
	if err != nil || rep.OK() || rep.Points != 2 {
		t.Fatalf("verify: %v points=%d problems=%+v", err, rep.Points, rep.Problems)
	}
	v.Close()
	if _, err := Repair(context.Background(), dir, RepairOptions{}); err != nil {
		t.Fatal(err)
	}
	v, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	checkDisks(t, v, want)
}

// TestRepairHealsRecordFromIndex damages one point's record in storage
// while the index keeps a sound copy: a dry run says it would write the
// record back and changes nothing; a repair writes it back, so the point
// stays whole instead of being lost with the old index.
func TestRepairHealsRecordFromIndex(t *testing.T) {
	dir, want := threePoints(t)
	recs, _ := filepath.Glob(filepath.Join(dir, "points", "*"))
	if len(recs) != 3 {
		t.Fatalf("%d records", len(recs))
	}
	path := recs[1]
	good, _ := os.ReadFile(path)
	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 0x04
	if err := os.WriteFile(path, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(path)
	for _, dry := range []bool{true, false} {
		rep, err := Repair(context.Background(), dir, RepairOptions{DryRun: dry})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Points != 3 || len(rep.Damaged) != 0 || len(rep.BadRecord) != 0 || len(rep.Healed) != 1 || rep.Healed[0] != name {
			t.Errorf("repair (dry run %v): %+v", dry, rep)
		}
		b, _ := os.ReadFile(path)
		if dry && !bytes.Equal(b, bad) || !dry && !bytes.Equal(b, good) {
			t.Errorf("after a repair (dry run %v) the record in storage is %s", dry, map[bool]string{true: "sound", false: "damaged"}[bytes.Equal(b, good)])
		}
	}
	v, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if rep, err := v.Verify(context.Background(), VerifyOptions{}); err != nil || !rep.OK() {
		t.Fatalf("verify after the repair: %v %+v", err, rep)
	}
	checkDisks(t, v, want)
}

func mustIDs(t *testing.T, v *Vault, resource string) []string {
	t.Helper()
	ids, err := v.PointIDs(resource)
	if err != nil || len(ids) == 0 {
		t.Fatalf("points of %s: %v %v", resource, ids, err)
	}
	return ids
}

// TestRepairFormat1 repairs a vault written by the previous release: its
// points, kept in its index alone, are written to storage first, never
// dropped; with that index lost, repair refuses and changes nothing.
func TestRepairFormat1(t *testing.T) {
	want := expectedDisks(t, "vault-format1")
	dir := testdataVault(t, "vault-format1")
	rep, err := Repair(context.Background(), dir, RepairOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Points != 3 {
		t.Fatalf("repair of a format 1 vault found %d points, want 3", rep.Points)
	}
	v, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkRestores(t, v, want)
	v.Close()

	lost := testdataVault(t, "vault-format1")
	os.RemoveAll(filepath.Join(lost, "index"))
	before, _ := os.ReadFile(filepath.Join(lost, "cairn.json"))
	if _, err := Repair(context.Background(), lost, RepairOptions{}); err == nil || !strings.Contains(err.Error(), "format 1") {
		t.Fatalf("repair of a format 1 vault without its index: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(lost, "cairn.json")); !bytes.Equal(before, after) {
		t.Fatal("a refused repair changed cairn.json")
	}
}

// TestVerifyAlongAChain loses one block that the first two points of a
// chain share at the same place and the third overwrote: verify, which
// checks each changed block of a chain once, names the first two only,
// with the block's range.
func TestVerifyAlongAChain(t *testing.T) {
	v := damageableVault(t, 64<<10)
	ctx := context.Background()
	data := disk(8, 1<<20)
	var points []*Point
	for i := 0; i < 3; i++ {
		if i == 2 {
			copy(data[5<<16:], disk(9, 64<<10)) // block 5 changes
		}
		copy(data[(10+i)<<16:], disk(int64(20+i), 64<<10)) // and one more each time
		p, err := v.Backup(ctx, "vm", []DiskSource{{Name: "vda", Src: &MemSource{Data: bytes.Clone(data)}}}, BackupOptions{})
		if err != nil {
			t.Fatal(err)
		}
		points = append(points, p)
	}
	h, err := v.blockHash(&points[0].Disks[0], 5)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.idx.DeleteBlocks([]index.Hash{h}); err != nil {
		t.Fatal(err)
	}
	rep, err := v.Verify(ctx, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Damaged) != 2 || rep.Damaged[0].Point != points[0].Name() || rep.Damaged[1].Point != points[1].Name() {
		t.Fatalf("damaged %+v, want the first two points", rep.DamagedPoints)
	}
	for _, d := range rep.Damaged {
		if r := d.Disks[0].Ranges; len(r) != 1 || r[0] != [2]int64{5 << 16, 6 << 16} {
			t.Errorf("%s: ranges %v, want [[327680 393216]]", d.Point, r)
		}
	}
}

// TestLostConfigIsRepaired loses or damages cairn.json in ways that
// leave nothing to read the vault by: the vault is refused with
// ErrNeedsRepair (never "not a vault", which invites a cairn init),
// and a repair rebuilds the config from the point records.
func TestLostConfigIsRepaired(t *testing.T) {
	for _, c := range []struct {
		name string
		lose func(t *testing.T, path string)
	}{
		{"deleted", func(t *testing.T, path string) { os.Remove(path) }},
		{"format 0", func(t *testing.T, path string) {
			b, _ := os.ReadFile(path)
			os.WriteFile(path, bytes.Replace(b, []byte(`"format": 2`), []byte(`"format": 0`), 1), 0o600)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, want := threePoints(t)
			c.lose(t, filepath.Join(dir, configName))
			if _, err := Open(dir, Options{}); !errors.Is(err, ErrNeedsRepair) {
				t.Fatalf("open: %v, want ErrNeedsRepair", err)
			}
			rep, err := Repair(context.Background(), dir, RepairOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Points != 3 || len(rep.Damaged) != 0 {
				t.Errorf("repair: %+v", rep)
			}
			v, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			if v.Config().BlockSize != 64<<10 {
				t.Errorf("block size %d after the repair, want 64 KiB", v.Config().BlockSize)
			}
			checkDisks(t, v, want)
		})
	}
	// An empty directory is no vault, and a repair makes none of it.
	empty := t.TempDir()
	if _, err := Open(empty, Options{}); !errors.Is(err, ErrNotVault) {
		t.Errorf("open of an empty directory: %v, want ErrNotVault", err)
	}
	if _, err := Repair(context.Background(), empty, RepairOptions{}); !errors.Is(err, ErrNotVault) {
		t.Errorf("repair of an empty directory: %v, want ErrNotVault", err)
	}
}
