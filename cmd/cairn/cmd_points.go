package main

import (
	"fmt"
	"io"
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
			"explained below the table; one known damaged (by verify, repair or a failed read) is marked !. --wide adds allocated bytes and exact sizes; it is the default\n" +
			"on a terminal wide enough. --json prints times in UTC.\n\n" +
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
			return env.withVault(c, func(v *snapshot.Vault) error {
				return runPoints(env, v, c.Args().First(), c.Bool("wide"), c.Bool("json"))
			})
		},
	}
}

func runPoints(env *cmdEnv, v *snapshot.Vault, name string, wide, asJSON bool) error {
	if name != "" {
		if err := snapshot.CheckName("resource", name); err != nil {
			return usagef("%v", err)
		}
	}
	points, err := v.Points(name)
	if err != nil {
		return err
	}
	if name != "" && len(points) == 0 {
		return fmt.Errorf("%w: resource %q has no points", snapshot.ErrNoPoint, name)
	}
	views := make([]pointView, 0, len(points))
	for _, p := range points {
		pv, err := newPointViewIn(v, p)
		if err != nil {
			return err
		}
		views = append(views, pv)
	}
	bad, err := v.BadRecords()
	if err != nil {
		return err
	}
	for _, b := range bad {
		res, id, _ := strings.Cut(b.Point, "@")
		if name == "" || name == res {
			views = append(views, pointView{Point: b.Point, Resource: res, ID: id,
				Damaged: &snapshot.PointDamage{Point: b.Point, Record: b.Reason, Disks: []snapshot.DiskDamage{}}})
		}
	}
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
		printPoints(&b, points, views, true, env.location())
		wide = maxLineWidth(b.String()) <= env.stdoutWidth
	}
	if err := printPoints(env.stdout, points, views, wide, env.location()); err != nil {
		return err
	}
	if c := v.Config().Capacity; c > 0 {
		fmt.Fprintf(env.stdout, "vault capacity: %s\n", capacityLine(v.Used(), c))
	}
	return nil
}

// printPoints writes the table of points: 80 columns for a single-disk
// resource, or wide with allocated bytes, exact sizes and seconds.
//
// views holds a view of each point in order, and after them those of
// points whose records cannot be read, which are named below the table.
func printPoints(w io.Writer, points []*snapshot.Point, views []pointView, wide bool, loc *time.Location) error {
	size, timeLayout := bytesShort, "2006-01-02 15:04"
	t := newTable(4, 5, 6)
	if wide {
		size, timeLayout = bytesIEC, "2006-01-02 15:04:05 MST"
		t = newTable(4, 5, 6, 7)
		t.row("POINT", "TIME", "TYPE", "DISKS", "SIZE", "ALLOCATED", "CHANGED", "ADDED")
	} else {
		t.row("POINT", "TIME", "TYPE", "DISKS", "SIZE", "CHANGED", "ADDED")
	}
	var notes []string
	for i, p := range points {
		var disks []string
		for _, d := range p.Disks {
			disks = append(disks, d.Name)
		}
		typ := pointType(p)
		if !wide && typ == "incremental" {
			typ = "incr"
		}
		if c := p.DiskChanges(); !c.None() {
			typ += "*"
			notes = append(notes, fmt.Sprintf("* %s: %s", p.Name(), c))
		}
		if d := views[i].Damaged; d != nil {
			typ += "!"
			notes = append(notes, fmt.Sprintf("! %s: damaged: %s (cairn show %s)", p.Name(), damageSummary(d), p.Name()))
		}
		cols := []string{p.Name(), p.Time.In(loc).Format(timeLayout), typ, strings.Join(disks, ","), size(p.Size())}
		if wide {
			cols = append(cols, size(p.Allocated()))
		}
		t.row(append(cols, size(p.Changed()), size(p.Added))...)
	}
	for _, v := range views[len(points):] {
		notes = append(notes, fmt.Sprintf("! %s: damaged: %s (%s; cairn repair)", v.Point, damageSummary(v.Damaged), v.Damaged.Record))
	}
	if err := t.write(w); err != nil {
		return err
	}
	for _, n := range notes {
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
