package main

import (
	"time"

	"github.com/cairn-backup/cairn/snapshot"
)

// pointView is a point as commands print it in JSON: the manifest
// without its block map pages.
type pointView struct {
	Point     string    `json:"point"`
	Resource  string    `json:"resource"`
	ID        string    `json:"id"`
	Time      time.Time `json:"time"`
	Type      string    `json:"type"` // full or incremental
	Parent    string    `json:"parent,omitempty"`
	Size      int64     `json:"size"`
	Allocated int64     `json:"allocated"`
	Changed   int64     `json:"changed"`
	Added     int64     `json:"added"`
	Seconds   float64   `json:"duration_seconds"`
	// Pinned points are kept whatever retention rules say.
	Pinned bool `json:"pinned"`
	// Consistency is application (freeze hooks ran and succeeded) or
	// crash; absent in points made before cairn recorded it.
	Consistency string `json:"consistency,omitempty"`
	// Trigger is manual, or "policy NAME".
	Trigger string     `json:"trigger,omitempty"`
	Disks   []diskView `json:"disks"`
	// DiskChanges says which disks were added, removed or renamed since
	// the parent; empty lists for a point with its parent's disks.
	DiskChanges snapshot.DiskChanges `json:"disk_changes"`
	// Damaged is what cannot be read of the point, when anything is
	// known so (from verify, repair or a failed read).
	Damaged *snapshot.PointDamage `json:"damaged,omitempty"`
}

type diskView struct {
	Name      string `json:"name"`
	Type      string `json:"type"`                    // full or incremental
	Base      string `json:"compared_with,omitempty"` // the parent's disk it was compared with (its old name if renamed)
	Source    string `json:"source,omitempty"`
	Size      int64  `json:"size"`
	BlockSize int    `json:"block_size"`
	Allocated int64  `json:"allocated"`
	Changed   int64  `json:"changed"`
	Added     int64  `json:"added"`
}

// newPointViewIn is newPointView with what the vault knows damaged.
func newPointViewIn(v *snapshot.Vault, p *snapshot.Point) (pointView, error) {
	pv := newPointView(p)
	var err error
	pv.Damaged, err = v.Damage(p)
	return pv, err
}

func newPointView(p *snapshot.Point) pointView {
	v := pointView{
		Point: p.Name(), Resource: p.Resource, ID: p.ID, Time: p.Time, Type: pointType(p),
		Size: p.Size(), Allocated: p.Allocated(), Changed: p.Changed(), Added: p.Added,
		Seconds: seconds(p.Duration), DiskChanges: p.DiskChanges(),
		Pinned: p.Pinned, Consistency: p.Consistency, Trigger: p.Trigger,
	}
	if !p.Full() {
		v.Parent = p.Resource + "@" + p.Parent
	}
	for i := range p.Disks {
		d := &p.Disks[i]
		dv := diskView{Name: d.Name, Type: "full", Source: d.Source, Size: d.Size, BlockSize: d.BlockSize,
			Allocated: d.Allocated, Changed: d.Changed, Added: d.Added}
		if base := d.ComparedWith(p); base != "" {
			dv.Type, dv.Base = "incremental", base
		}
		v.Disks = append(v.Disks, dv)
	}
	return v
}

func pointType(p *snapshot.Point) string {
	if p.Full() {
		return "full"
	}
	return "incremental"
}
