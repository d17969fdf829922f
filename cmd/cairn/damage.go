package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/cairn-backup/cairn/snapshot"
)

// printDamage names each damaged point, disk and byte range, for verify
// and repair.
func printDamage(w io.Writer, damaged []snapshot.PointDamage) {
	for _, p := range damaged {
		if p.Record != "" {
			fmt.Fprintf(w, "  damaged:  %s: its record cannot be read (%s)\n", p.Point, p.Record)
			continue
		}
		for _, d := range p.Disks {
			fmt.Fprintf(w, "  damaged:  %s disk %s: %s in %d range(s): %s\n", p.Point, d.Disk, bytesIEC(d.Bytes),
				len(d.Ranges), rangeList(d.Ranges, 6))
		}
	}
}

// rangeList writes byte ranges as "[start, end)", at most max of them.
func rangeList(ranges [][2]int64, max int) string {
	var parts []string
	for i, r := range ranges {
		if i == max {
			parts = append(parts, fmt.Sprintf("and %d more", len(ranges)-i))
			break
		}
		parts = append(parts, fmt.Sprintf("[%d, %d)", r[0], r[1]))
	}
	return strings.Join(parts, " ")
}

// damageSummary says in a few words what is damaged of a point.
func damageSummary(d *snapshot.PointDamage) string {
	if d.Record != "" {
		return "its record cannot be read"
	}
	var parts []string
	for _, dd := range d.Disks {
		parts = append(parts, fmt.Sprintf("disk %s: %s in %d range(s)", dd.Disk, bytesIEC(dd.Bytes), len(dd.Ranges)))
	}
	return strings.Join(parts, "; ")
}
