package main

import (
	"context"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/snapshot"
)

func newGCCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "gc",
		Usage: "free the space of blocks no point uses; compact half-empty packs",
		Description: "Reads the block maps of every point (never block data), drops the blocks none uses, deletes\n" +
			"packs left empty, and rewrites packs less than half used: their live blocks are copied as\n" +
			"stored into new packs, which are committed before the old ones go. Backups, restores and\n" +
			"mounts go on meanwhile: a running backup's blocks are kept, and a point deleted while a file of\n" +
			"it is open in the mount keeps its bytes until the file is closed. A gc stopped at any moment\n" +
			"loses nothing; the next one finishes the job. Prints the bytes freed and the time it took.\n\n" +
			"Examples:\n" +
			"  cairn gc --dry-run\n" +
			"  cairn gc\n" +
			"  cairn prune --keep-daily 7 && cairn gc --json",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Usage: "report what gc would free; change nothing"},
			&cli.Float64Flag{Name: "threshold", Value: 0.5, Usage: "compact packs whose live share is below this (0 to 1; 0 compacts nothing)"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := args(c, 0, 0, "[--dry-run] [--threshold F] [--json]"); err != nil {
				return err
			}
			th := c.Float64("threshold")
			if th < 0 || th > 1 {
				return usagef("--threshold %g: give a share from 0 to 1", th)
			}
			if th == 0 {
				th = -1
			}
			return env.withVault(c, func(v *snapshot.Vault) error {
				return runGC(c.Context, env, v, snapshot.GCOptions{DryRun: c.Bool("dry-run"), Threshold: th}, c.Bool("json"))
			})
		},
	}
}

func runGC(ctx context.Context, env *cmdEnv, v *snapshot.Vault, o snapshot.GCOptions, asJSON bool) error {
	bar := env.newProgress("gc", false)
	o.Progress = bar.update
	rep, err := v.GC(ctx, o)
	bar.done()
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(env.stdout, rep)
	}
	w := env.stdout
	verb := "freed"
	if rep.DryRun {
		verb = "would free (dry run: nothing changed)"
	}
	fmt.Fprintf(w, "%s %s in %s: %d of %d blocks, %d packs deleted, %d compacted into %d (%s moved)\n", verb,
		bytesIEC(rep.BytesFreed), shortDuration(time.Duration(rep.Seconds*float64(time.Second))), rep.BlocksFreed, rep.Blocks,
		rep.PacksDeleted, rep.PacksCompacted, rep.PacksWritten, bytesIEC(rep.BytesMoved))
	fmt.Fprintf(w, "vault: %s in packs (was %s); %d points kept", bytesIEC(rep.BytesAfter), bytesIEC(rep.BytesBefore), rep.Points)
	if rep.Held > 0 {
		fmt.Fprintf(w, ", %d held by readers", rep.Held)
	}
	if rep.KeptForBackups > 0 {
		fmt.Fprintf(w, ", %d blocks kept for running backups", rep.KeptForBackups)
	}
	fmt.Fprintln(w)
	return nil
}
