package snapshot

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

// TestUseKeepsPointFromPruneAndDelete checks that a point in use (an
// NBD export) survives prune and delete, with its user's reason, that
// gc keeps its blocks, and that releasing it lets both remove it.
func TestUseKeepsPointFromPruneAndDelete(t *testing.T) {
	v := TestVault(t, Config{BlockSize: 64 << 10})
	ctx := context.Background()
	var points []*Point
	for i := range 3 {
		data := bytes.Repeat([]byte{byte('a' + i)}, 256<<10)
		p, err := v.Backup(ctx, "vm", []DiskSource{{Name: "vda", Src: &MemSource{Data: data}}}, BackupOptions{})
		if err != nil {
			t.Fatal(err)
		}
		points = append(points, p)
	}
	oldest := points[0]
	why := "exported over NBD (job x)"
	release := v.Use(oldest, why)
	// A second user and a plain reader of the same point.
	release2 := v.Use(oldest, "exported over NBD (job y)")
	unhold := v.Hold(oldest)

	err := v.Delete([]*Point{oldest})
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), why) {
		t.Fatalf("delete of a point in use: %v, want ErrInUse naming %q", err, why)
	}
	rep, err := v.Prune(nil, Rules{Last: 1}, false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Removed != 1 || rep.Kept != 2 {
		t.Fatalf("prune: removed %d, kept %d; want the middle point removed alone", rep.Removed, rep.Kept)
	}
	for _, d := range rep.Resources[0].Decisions {
		if d.Name == oldest.Name() && (!d.Keep || !strings.Contains(strings.Join(d.Reasons, ","), why)) {
			t.Errorf("the point in use: %+v", d)
		}
	}
	if _, err := v.GC(ctx, GCOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := v.OpenDisk(oldest, "")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	if _, err := r.ReadAt(buf, 100<<10); err != nil || buf[0] != 'a' {
		t.Fatalf("read of the point in use after gc: %v %q", err, buf[:1])
	}

	// One user gone, the other still keeps it.
	release()
	release() // twice is once
	if err := v.Delete([]*Point{oldest}); !errors.Is(err, ErrInUse) {
		t.Fatalf("delete with a user left: %v", err)
	}
	release2()
	unhold()
	rep, err = v.Prune(nil, Rules{Last: 1}, false)
	if err != nil || rep.Removed != 1 {
		t.Fatalf("prune after release: %+v, %v", rep, err)
	}
	if _, err := v.Point("vm", oldest.ID); !errors.Is(err, ErrNoPoint) {
		t.Errorf("the released point survived prune: %v", err)
	}
}
