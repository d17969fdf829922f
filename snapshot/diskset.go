package snapshot

import (
	"errors"
	"fmt"
	"strings"
)

// ErrDisksChanged is returned by a backup with RequireSameDisks whose
// disks are not those of the resource's latest point.
var ErrDisksChanged = errors.New("the disks differ from the latest point")

// Rename is a disk that a point names differently from its parent.
type Rename struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// DiskChanges says how a point's set of disks differs from its parent's.
type DiskChanges struct {
	Added   []string `json:"added"`   // new disks, backed up in full
	Removed []string `json:"removed"` // disks of the parent this point lacks
	Renamed []Rename `json:"renamed"` // same source, new name
}

// None reports whether the point has exactly its parent's disks.
func (c DiskChanges) None() bool {
	return len(c.Added) == 0 && len(c.Removed) == 0 && len(c.Renamed) == 0
}

// String describes the changes in one line: "vda renamed to d; r added;
// vdb removed".
func (c DiskChanges) String() string {
	var parts []string
	for _, r := range c.Renamed {
		parts = append(parts, fmt.Sprintf("%s renamed to %s", r.From, r.To))
	}
	if len(c.Added) > 0 {
		parts = append(parts, strings.Join(c.Added, ", ")+" added (backed up in full)")
	}
	if len(c.Removed) > 0 {
		parts = append(parts, strings.Join(c.Removed, ", ")+" removed")
	}
	return strings.Join(parts, "; ")
}

// DiskChanges compares the point's disks with its parent's. A full
// point (no parent) has none.
func (p *Point) DiskChanges() DiskChanges {
	c := DiskChanges{Added: []string{}, Removed: append([]string{}, p.Removed...), Renamed: []Rename{}}
	if p.Full() {
		return c
	}
	for _, d := range p.Disks {
		switch base := d.ComparedWith(p); {
		case base == "":
			c.Added = append(c.Added, d.Name)
		case base != d.Name:
			c.Renamed = append(c.Renamed, Rename{From: base, To: d.Name})
		}
	}
	return c
}

// Incremental reports whether the disk was compared against a disk of
// the point's parent, so that only its changed blocks were new.
func (d *Disk) Incremental(p *Point) bool { return d.ComparedWith(p) != "" }

// ComparedWith names the disk of the point's parent that d, a disk of p,
// was compared against, or "" for a disk backed up in full. Points
// written before disks recorded it compared each disk with the parent's
// disk of the same name.
func (d *Disk) ComparedWith(p *Point) string {
	if p.Full() {
		return ""
	}
	if p.Version < 2 {
		return d.Name
	}
	return d.Base
}

// planDisks pairs each source with the parent's disk to compare it
// against: the disk of the same name, or else a disk of the parent that
// read from the same path and that no source of its name claims (a
// renamed disk). It returns the parent disks nothing is compared with.
func planDisks(parent *Point, srcs []DiskSource) (bases []*Disk, removed []string) {
	bases = make([]*Disk, len(srcs))
	if parent == nil {
		return bases, nil
	}
	used := map[string]bool{}
	for i, s := range srcs {
		if d := parent.Disk(s.Name); d != nil {
			bases[i] = d
			used[d.Name] = true
		}
	}
	for i, s := range srcs {
		if bases[i] != nil || s.Path == "" {
			continue
		}
		for j := range parent.Disks {
			d := &parent.Disks[j]
			if !used[d.Name] && d.Source == s.Path {
				bases[i] = d
				used[d.Name] = true
				break
			}
		}
	}
	for _, d := range parent.Disks {
		if !used[d.Name] {
			removed = append(removed, d.Name)
		}
	}
	return bases, removed
}
