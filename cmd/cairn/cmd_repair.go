package main

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/snapshot"
)

func newRepairCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "repair",
		Usage: "rebuild the index from storage; heal or mark what is damaged",
		Description: "The vault's storage (its packs and point records) is the truth; the index is a cache that\n" +
			"repair rebuilds from it: every point, every block location (from the packs' headers, without\n" +
			"reading block data), the vault's config. Where storage holds several copies of a block, a sound\n" +
			"one is chosen, which heals the points that use it. Every point is then checked as verify does:\n" +
			"those still damaged are named with their disks and byte ranges (their other ranges still restore\n" +
			"and mount; restore --skip-damaged writes them). No point is ever deleted, and no data changed.\n\n" +
			"The new index is built beside the old one and swapped in at the end: a repair stopped at any\n" +
			"moment is simply run again. It needs the vault to itself: stop a daemon or mount first.\n" +
			"Exits 1 when points remain damaged.\n\n" +
			"Examples:\n" +
			"  cairn repair --dry-run\n" +
			"  cairn repair\n" +
			"  cairn --vault /srv/vault repair --json",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Usage: "report what repair would do; change nothing"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := args(c, 0, 0, "[--dry-run] [--json]"); err != nil {
				return err
			}
			return runRepair(c.Context, env, env.path(env.vaultDir(c)), c.Bool("dry-run"), c.Bool("json"))
		},
	}
}

func runRepair(ctx context.Context, env *cmdEnv, dir string, dryRun, asJSON bool) error {
	// Repair's own structures are small; what grows is garbage from the
	// index it writes. A soft limit has the collector keep the heap,
	// and so the peak, down, however many blocks the vault holds.
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(repairMemoryLimit))
	bar := env.newProgress("repair", false)
	rep, err := snapshot.Repair(ctx, dir, snapshot.RepairOptions{DryRun: dryRun, Logf: env.warnf, Progress: countProgress(bar)})
	bar.done()
	if errors.Is(err, snapshot.ErrLocked) {
		return fmt.Errorf("%w: stop the cairn daemon or mount that has it, then run cairn repair", err)
	}
	if err != nil {
		return err
	}
	if asJSON {
		if err := writeJSON(env.stdout, rep); err != nil {
			return err
		}
	} else {
		printRepair(env, dir, rep)
	}
	if n := len(rep.Damaged); n > 0 {
		return fmt.Errorf("%d point(s) are still damaged: %s", n, damagedNames(rep.Damaged))
	}
	return nil
}

// repairMemoryLimit is the soft memory limit repair runs under.
const repairMemoryLimit = 96 << 20

// countProgress shows a count (packs) on a bar made for bytes.
func countProgress(bar *progressBar) func(done, total int64) {
	if bar == nil {
		return nil
	}
	return bar.update
}

func printRepair(env *cmdEnv, dir string, rep *snapshot.RepairReport) {
	w := env.stdout
	verb := "rebuilt"
	if rep.DryRun {
		verb = "would rebuild (dry run: nothing changed)"
	}
	fmt.Fprintf(w, "%s the index of %s from storage in %s (the old index was %s)\n", verb, dir,
		shortDuration(time.Duration(rep.Seconds*float64(time.Second))), rep.OldIndex)
	fmt.Fprintf(w, "  %d points, %d packs, %d blocks\n", rep.Points, rep.Packs, rep.Blocks)
	for _, p := range rep.Added {
		fmt.Fprintf(w, "  added:    %s (in storage, not in the old index)\n", p)
	}
	for _, p := range rep.Dropped {
		fmt.Fprintf(w, "  dropped:  %s (in the old index, not in storage)\n", p)
	}
	if rep.Relocated > 0 {
		fmt.Fprintf(w, "  %d damaged block(s) now read from a sound copy\n", rep.Relocated)
	}
	for _, p := range rep.Healed {
		fmt.Fprintf(w, "  healed:   %s\n", p)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "  note:     %s\n", n)
	}
	printDamage(w, rep.Damaged)
	if len(rep.Damaged) == 0 {
		fmt.Fprintln(w, "  every point is whole")
	}
}

func damagedNames(d []snapshot.PointDamage) string {
	names := make([]string, len(d))
	for i, p := range d {
		names[i] = p.Point
	}
	if len(names) > 5 {
		names = append(names[:5], "...")
	}
	return strings.Join(names, ", ")
}
