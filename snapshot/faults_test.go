package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/chunkstore/storage"
)

// TestStorageFaults injects every fault storage has into every write a
// vault makes to it, during every operation that writes: EIO, ENOSPC, a
// short write (the disk filling up mid-write) and a failed fsync (a
// Commit that fails, or a Put, whose fsync is inside it), into pack
// writes (Create, Write, Commit) and point-record writes (Put), and
// deletes, during backups, pins, deletes and gc's compaction. For each:
//
//   - the operation fails with one line that says what storage said;
//   - nothing committed is harmed: every point restores byte for byte,
//     verify --data finds nothing wrong, no point appears or goes;
//   - once the fault is gone the same operation succeeds.
//
// The vault is reopened at the end (the first open succeeds) and
// verified again. The summary line counts the faults injected.
func TestStorageFaults(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := Init(dir, Config{BlockSize: 16 << 10}, time.Now()); err != nil {
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
	want := map[string][]byte{} // point name → its disk's bytes
	seed := int64(100)
	// backup backs up new bytes (so that it writes packs): big, random
	// ones (several writes of a pack) or a small disk.
	backup := func(resource string, big bool) (*Point, []byte, error) {
		seed++
		data := disk(seed, 128<<10)
		if big {
			data = make([]byte, 5<<18) // more than a pack writer's buffer
			rand.New(rand.NewSource(seed)).Read(data)
		}
		p, err := v.Backup(ctx, resource, []DiskSource{{Name: "vda", Src: &MemSource{Data: data}}}, BackupOptions{})
		return p, data, err
	}
	commit := func(p *Point, data []byte, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		want[p.Name()] = data
	}
	// trim deletes the oldest points of vm but three, so that the checks
	// after each fault stay short.
	trim := func() {
		t.Helper()
		vm, _ := v.Points("vm")
		if len(vm) <= 3 {
			return
		}
		if err := v.Delete(vm[:len(vm)-3]); err != nil {
			t.Fatal(err)
		}
		for _, p := range vm[:len(vm)-3] {
			delete(want, p.Name())
		}
	}
	for _, res := range []string{"vm", "db", "vm"} {
		commit(backup(res, false))
	}

	type fault struct {
		name  string
		fault storage.Fault
		is    error // what the operation's error wraps
	}
	faults := []fault{
		{"EIO", storage.FaultErr(syscall.EIO), syscall.EIO},
		{"ENOSPC", storage.FaultErr(syscall.ENOSPC), storage.ErrNoSpace},
		{"short write", storage.FaultShortWrite(100, nil), io.ErrShortWrite},
		{"short write, ENOSPC", storage.FaultShortWrite(3000, syscall.ENOSPC), storage.ErrNoSpace},
	}
	fsync := fault{"failed fsync", storage.FaultErr(syscall.EIO), syscall.EIO}
	type target struct {
		what string
		rule storage.Rule
	}
	packWrites := []target{
		{"pack create", storage.Rule{Op: storage.OpCreate, Kind: storage.Packs}},
		{"first pack write", storage.Rule{Op: storage.OpWrite, Kind: storage.Packs}},
		{"later pack write", storage.Rule{Op: storage.OpWrite, Kind: storage.Packs, Skip: 1}},
		{"pack commit", storage.Rule{Op: storage.OpCommit, Kind: storage.Packs}},
	}
	recordPut := target{"point record write", storage.Rule{Op: storage.OpPut, Kind: storage.Points}}

	injected, cases, harmed, reran := 0, 0, 0, 0
	byFault, byTarget := map[string]int{}, map[string]int{}
	// try runs op with the fault on the target, then checks the vault,
	// then runs op again without the fault.
	try := func(opName string, tg target, f fault, op func() error) {
		t.Helper()
		name := fmt.Sprintf("%s: %s in the %s", opName, f.name, tg.what)
		rule := tg.rule
		rule.Fault = f.fault
		if tg.rule.Op == storage.OpCommit && f.name != fsync.name || tg.rule.Op != storage.OpCommit && f.name == fsync.name {
			return // a commit fails as its fsync does; other calls fail with EIO
		}
		if tg.rule.Op == storage.OpCreate && f.is == io.ErrShortWrite || tg.rule.Op == storage.OpDelete && f.name != "EIO" {
			return // nothing written: nothing short, nothing to fill
		}
		id := faulty.Add(rule)
		err := op()
		fired := faulty.Fired(id)
		faulty.Remove(id)
		cases++
		injected += fired
		byFault[f.name] += fired
		byTarget[opName+" "+tg.what] += fired
		switch {
		case fired == 0:
			t.Errorf("%s: the fault never fired (err %v)", name, err)
		case err == nil:
			t.Errorf("%s: the operation succeeded", name)
		case strings.Contains(err.Error(), "\n"):
			t.Errorf("%s: the error is several lines: %q", name, err)
		case !errors.Is(err, f.is):
			t.Errorf("%s: %v, want an error wrapping %v", name, err, f.is)
		default:
			t.Logf("%s: %v", name, err)
		}
		if !checkCommitted(t, v, want, name) {
			harmed++
		}
		if err := op(); err != nil {
			t.Errorf("%s: again once the fault is gone: %v", name, err)
		} else {
			reran++
		}
	}

	// Backups: every write of packs and of the point record.
	for _, tg := range append(packWrites, recordPut) {
		for _, f := range append(faults, fsync) {
			var data []byte
			var p *Point
			trim()
			try("backup", tg, f, func() error {
				var err error
				if p == nil {
					if p, data, err = backup("vm", tg.rule.Skip > 0); err == nil {
						want[p.Name()] = data
					}
					return err
				}
				// The rerun backs up the same bytes as the failed one.
				p, err = v.Backup(ctx, "vm", []DiskSource{{Name: "vda", Src: &MemSource{Data: data}}}, BackupOptions{})
				if err == nil {
					want[p.Name()] = data
				}
				return err
			})
		}
	}

	// A pin rewrites the point's record whole.
	points, _ := v.Points("db")
	for _, f := range append(faults, fsync) {
		try("pin", recordPut, f, func() error {
			if err := v.SetPinned(points[:1], true); err != nil {
				return err
			}
			return v.SetPinned(points[:1], false)
		})
	}

	// gc compacts packs that dead blocks fill: it writes new packs,
	// then deletes the old ones.
	packDelete := target{"pack delete", storage.Rule{Op: storage.OpDelete, Kind: storage.Packs}}
	for _, tg := range append(packWrites, packDelete) {
		if tg.rule.Skip > 0 {
			continue // compaction writes a small pack, in one write
		}
		for _, f := range append(faults, fsync) {
			// Dead blocks to compact: the oldest points of vm go.
			commit(backup("vm", false))
			trim()
			try("gc", tg, f, func() error {
				_, err := v.GC(ctx, GCOptions{Threshold: 0.99, MaxUnused: 0.0001})
				return err
			})
		}
	}

	// A delete removes the point's record first: failing, it keeps the
	// point whole.
	recordDelete := target{"point record delete", storage.Rule{Op: storage.OpDelete, Kind: storage.Points}}
	try("delete", recordDelete, faults[0], func() error {
		vm, _ := v.Points("vm")
		err := v.Delete(vm[:1])
		if err == nil {
			delete(want, vm[0].Name())
		}
		return err
	})

	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	v, err = Open(dir, Options{})
	if err != nil {
		t.Fatalf("the first open after the faults: %v", err)
	}
	defer v.Close()
	checkCommitted(t, v, want, "after a reopen")
	t.Logf("storage faults: %d cases, %d faults injected, %d left a committed point harmed, %d succeeded once the fault was gone; "+
		"by fault: %s; by operation and write: %s", cases, injected, harmed, reran, counts(byFault), counts(byTarget))
}

// counts is a map of counts as "key n, key n", keys sorted.
func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// checkCommitted checks that the vault holds exactly the points of want,
// each restoring to its bytes, and that verify --data finds nothing
// wrong; it reports whether all was well.
func checkCommitted(t *testing.T, v *Vault, want map[string][]byte, when string) bool {
	t.Helper()
	ok := true
	bad := func(format string, args ...any) {
		t.Helper()
		t.Errorf(when+": "+format, args...)
		ok = false
	}
	points, err := v.Points("")
	if err != nil {
		t.Fatalf("%s: points: %v", when, err)
	}
	if len(points) != len(want) {
		var names []string
		for _, p := range points {
			names = append(names, p.Name())
		}
		bad("%d points %v, want %d", len(points), names, len(want))
	}
	for _, p := range points {
		data, known := want[p.Name()]
		if !known {
			bad("a point %s that was never committed", p.Name())
			continue
		}
		out := make(memWriter, p.Disks[0].Size)
		if err := v.Restore(context.Background(), p, "", out, RestoreOptions{}); err != nil {
			bad("restore %s: %v", p.Name(), err)
		} else if !bytes.Equal(out, data) {
			bad("%s restores differently", p.Name())
		}
	}
	rep, err := v.Verify(context.Background(), VerifyOptions{Data: true})
	if err != nil {
		t.Fatalf("%s: verify --data: %v", when, err)
	}
	for _, pr := range rep.Problems {
		bad("verify --data: %s", pr.What)
	}
	return ok
}
