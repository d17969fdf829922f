package snapshot

import (
	"context"
	"errors"
	"slices"
	"testing"
)

func TestDiskSetChanges(t *testing.T) {
	ctx := context.Background()
	v := TestVault(t, Config{BlockSize: 64 << 10})
	d := &MemSource{Data: disk(1, 1<<20)}
	r := &MemSource{Data: disk(2, 1<<20)}
	backup := func(o BackupOptions, srcs ...DiskSource) (*Point, error) {
		t.Helper()
		return v.Backup(ctx, "web01", srcs, o)
	}
	first, err := backup(BackupOptions{}, DiskSource{Name: "vda", Path: "/img/d.img", Src: d})
	if err != nil {
		t.Fatal(err)
	}
	if c := first.DiskChanges(); !c.None() || first.Disks[0].Incremental(first) {
		t.Fatalf("a first point has no disk changes and no incremental disk: %+v", c)
	}

	// Backed up again as "d.img r.img": d is vda renamed (same source),
	// r is new.
	srcs := []DiskSource{{Name: "d", Path: "/img/d.img", Src: d}, {Name: "r", Path: "/img/r.img", Src: r}}
	if _, err := backup(BackupOptions{RequireSameDisks: true}, srcs...); !errors.Is(err, ErrDisksChanged) {
		t.Fatalf("RequireSameDisks: %v, want ErrDisksChanged", err)
	}
	if ids, _ := v.PointIDs("web01"); len(ids) != 1 {
		t.Fatalf("a refused backup committed a point: %v", ids)
	}
	second, err := backup(BackupOptions{}, srcs...)
	if err != nil {
		t.Fatal(err)
	}
	c := second.DiskChanges()
	if !slices.Equal(c.Added, []string{"r"}) || len(c.Removed) != 0 || !slices.Equal(c.Renamed, []Rename{{"vda", "d"}}) {
		t.Fatalf("changes %+v, want d renamed from vda, r added", c)
	}
	if !second.Disks[0].Incremental(second) || second.Disks[1].Incremental(second) {
		t.Errorf("d must be incremental (compared with vda), r full")
	}
	if second.Disks[0].Changed != 0 || second.Disks[1].Changed != 1<<20 {
		t.Errorf("changed d %d r %d, want 0 and all of r", second.Disks[0].Changed, second.Disks[1].Changed)
	}
	if got := c.String(); got != "vda renamed to d; r added (backed up in full)" {
		t.Errorf("String() = %q", got)
	}

	// Back to one disk: r is removed; the manifest keeps saying so after
	// a reopen, whatever happens to the parent.
	third, err := backup(BackupOptions{}, DiskSource{Name: "d", Path: "/img/d.img", Src: d})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Delete([]*Point{second}); err != nil {
		t.Fatal(err)
	}
	again, err := v.Point("web01", third.ID)
	if err != nil {
		t.Fatal(err)
	}
	if c := again.DiskChanges(); !slices.Equal(c.Removed, []string{"r"}) || len(c.Added)+len(c.Renamed) != 0 {
		t.Errorf("changes %+v, want r removed", c)
	}
	// The same disks again: nothing to say, and RequireSameDisks passes.
	if _, err := backup(BackupOptions{RequireSameDisks: true}, DiskSource{Name: "d", Path: "/img/d.img", Src: d}); err != nil {
		t.Fatal(err)
	}
}
