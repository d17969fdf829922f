package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/snapshot"
)

func newPointsCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "points",
		Usage: "list backup points, oldest first",
		Description: "Shows each point's local time, type (full, or incremental: only changed blocks were new),\n" +
			"disks, size, bytes changed since the point before and bytes it added to the vault after\n" +
			"dedup and compression. A point whose disks differ from the point before is marked * and\n" +
			"explained below the table; one known damaged (by verify, repair or a failed read) is marked !;\n" +
			"a pinned one ^. --wide adds allocated bytes and exact sizes; it is the default on a terminal\n" +
			"wide enough. --json prints times in UTC, and each point's consistency and trigger.\n\n" +
			"Examples:\n" +
			"  cairn points\n" +
			"  cairn points web01 --wide\n" +
			"  cairn points web01 --json | jq -r '.[-1].point'",
		ArgsUsage: "[NAME]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "wide", Usage: "more columns and exact sizes"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := args(c, 0, 1, "[NAME] [--wide] [--json]"); err != nil {
				return err
			}
			name := c.Args().First()
			q := url.Values{}
			if name != "" {
				q.Set("resource", name)
			}
			pv, err := ask(env, c, http.MethodGet, "/points", q, nil, func(v *snapshot.Vault) (*pointsView, error) {
				return listPoints(v, name)
			})
			if err != nil {
				return err
			}
			return renderPoints(env, pv, c.Bool("wide"), c.Bool("json"))
		},
	}
}

// pointsView is what GET /v1/points answers: the points (what points
// --json prints) and the vault's capacity, which the table ends with.
type pointsView struct {
	Points   []pointView `json:"points"`
	Used     int64       `json:"used"`
	Capacity int64       `json:"capacity,omitempty"`
}

// listPoints lists the points of a resource (every resource when name is
// ""), oldest first, and after them those whose records cannot be read.
func listPoints(v *snapshot.Vault, name string) (*pointsView, error) {
	if name != "" {
		if err := snapshot.CheckName("resource", name); err != nil {
			return nil, usagef("%v", err)
		}
	}
	points, err := v.Points(name)
	if err != nil {
		return nil, err
	}
	if name != "" && len(points) == 0 {
		return nil, fmt.Errorf("%w: resource %q has no points", snapshot.ErrNoPoint, name)
	}
	views := make([]pointView, 0, len(points))
	for _, p := range points {
		pv, err := newPointViewIn(v, p)
		if err != nil {
			return nil, err
		}
		views = append(views, pv)
	}
	bad, err := v.BadRecords()
	if err != nil {
		return nil, err
	}
	for _, b := range bad {
		res, id, _ := strings.Cut(b.Point, "@")
		if name == "" || name == res {
			views = append(views, pointView{Point: b.Point, Resource: res, ID: id,
				Damaged: &snapshot.PointDamage{Point: b.Point, Record: b.Reason, Disks: []snapshot.DiskDamage{}}})
		}
	}
	return &pointsView{Points: views, Used: v.Used(), Capacity: v.Config().Capacity}, nil
}

func renderPoints(env *cmdEnv, pv *pointsView, wide, asJSON bool) error {
	views := pv.Points
	if asJSON {
		return writeJSON(env.stdout, views)
	}
	if len(views) == 0 {
		fmt.Fprintln(env.stderr, "no points yet (make one with cairn backup)")
		return nil
	}
	if !wide && env.stdoutWidth > 0 {
		// A terminal that has room for the wide table gets it.
		var b strings.Builder
		printPoints(&b, views, true, env.location())
		wide = maxLineWidth(b.String()) <= env.stdoutWidth
	}
	if err := printPoints(env.stdout, views, wide, env.location()); err != nil {
		return err
	}
	if pv.Capacity > 0 {
		fmt.Fprintf(env.stdout, "vault capacity: %s\n", capacityLine(pv.Used, pv.Capacity))
	}
	return nil
}

// printPoints writes the table of points: 80 columns for a single-disk
// resource, or wide with allocated bytes, exact sizes and seconds.
//
// Points whose records cannot be read (listed after the others, with no
// type: nothing is known of them but their damage) are named below the
// table.
func printPoints(w io.Writer, views []pointView, wide bool, loc *time.Location) error {
	size, timeLayout := bytesShort, "2006-01-02 15:04"
	t := newTable(4, 5, 6)
	if wide {
		size, timeLayout = bytesIEC, "2006-01-02 15:04:05 MST"
		t = newTable(4, 5, 6, 7)
		t.row("POINT", "TIME", "TYPE", "DISKS", "SIZE", "ALLOCATED", "CHANGED", "ADDED")
	} else {
		t.row("POINT", "TIME", "TYPE", "DISKS", "SIZE", "CHANGED", "ADDED")
	}
	var notes, unreadable []string
	pinned := false
	for _, p := range views {
		if d := p.Damaged; p.Type == "" && d != nil {
			unreadable = append(unreadable, fmt.Sprintf("! %s: damaged: %s (%s; cairn repair)", p.Point, damageSummary(d), d.Record))
			continue
		}
		var disks []string
		for _, d := range p.Disks {
			disks = append(disks, d.Name)
		}
		typ := p.Type
		if !wide && typ == "incremental" {
			typ = "incr"
		}
		if c := p.DiskChanges; !c.None() {
			typ += "*"
			notes = append(notes, fmt.Sprintf("* %s: %s", p.Point, c))
		}
		if d := p.Damaged; d != nil {
			typ += "!"
			notes = append(notes, fmt.Sprintf("! %s: damaged: %s (cairn show %s)", p.Point, damageSummary(d), p.Point))
		}
		if p.Pinned {
			typ += "^"
			pinned = true
		}
		cols := []string{p.Point, p.Time.In(loc).Format(timeLayout), typ, strings.Join(disks, ","), size(p.Size)}
		if wide {
			cols = append(cols, size(p.Allocated))
		}
		t.row(append(cols, size(p.Changed), size(p.Added))...)
	}
	if err := t.write(w); err != nil {
		return err
	}
	if pinned {
		notes = append(notes, "^ pinned: kept whatever retention rules say (cairn unpin)")
	}
	for _, n := range append(notes, unreadable...) {
		fmt.Fprintln(w, n)
	}
	return nil
}

// maxLineWidth is the length of the longest line of s.
func maxLineWidth(s string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		n = max(n, len(l))
	}
	return n
}
