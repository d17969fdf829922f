package main

import (
	"time"

	"github.com/cairn-backup/cairn/snapshot"
)

// pointView is a point as commands print it in JSON: the manifest
// without its block map pages.
type pointView struct {
	Point     string     `json:"point"`
	Resource  string     `json:"resource"`
	ID        string     `json:"id"`
	Time      time.Time  `json:"time"`
	Type      string     `json:"type"` // full or incremental
	Parent    string     `json:"parent,omitempty"`
	Size      int64      `json:"size"`
	Allocated int64      `json:"allocated"`
	Changed   int64      `json:"changed"`
	Added     int64      `json:"added"`
	Seconds   float64    `json:"duration_seconds"`
	Disks     []diskView `json:"disks"`
}

type diskView struct {
	Name      string `json:"name"`
	Source    string `json:"source,omitempty"`
	Size      int64  `json:"size"`
	BlockSize int    `json:"block_size"`
	Allocated int64  `json:"allocated"`
	Changed   int64  `json:"changed"`
	Added     int64  `json:"added"`
}

func newPointView(p *snapshot.Point) pointView {
	v := pointView{
		Point: p.Name(), Resource: p.Resource, ID: p.ID, Time: p.Time, Type: pointType(p),
		Size: p.Size(), Allocated: p.Allocated(), Changed: p.Changed(), Added: p.Added,
		Seconds: p.Duration.Seconds(),
	}
	if !p.Full() {
		v.Parent = p.Resource + "@" + p.Parent
	}
	for _, d := range p.Disks {
		v.Disks = append(v.Disks, diskView{Name: d.Name, Source: d.Source, Size: d.Size, BlockSize: d.BlockSize,
			Allocated: d.Allocated, Changed: d.Changed, Added: d.Added})
	}
	return v
}

func pointType(p *snapshot.Point) string {
	if p.Full() {
		return "full"
	}
	return "incremental"
}
