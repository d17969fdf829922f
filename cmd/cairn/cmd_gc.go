package main

import (
	"context"
	"fmt"

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
			req := gcRequest{DryRun: c.Bool("dry-run"), Threshold: th}
			var rep snapshot.GCReport
			return env.job(c, "gc", req, env.newProgress("gc", false), &rep, func() error { return renderGC(env, &rep, c.Bool("json")) })
		},
	}
}

// gcRequest is a gc job's params.
type gcRequest struct {
	DryRun bool `json:"dry_run,omitempty"`
	// Threshold is the live share under which a pack is compacted: 0.5
	// when 0; negative compacts nothing.
	Threshold float64 `json:"threshold,omitempty"`
}

func (gcRequest) target() string { return "" }

func (r *gcRequest) check() error {
	if r.Threshold > 1 {
		return usagef("threshold %g: give a share from 0 to 1", r.Threshold)
	}
	return nil
}

func runGC(ctx context.Context, v *snapshot.Vault, r gcRequest, jc *jobContext) (*snapshot.GCReport, error) {
	rep, err := v.GC(ctx, snapshot.GCOptions{DryRun: r.DryRun, Threshold: r.Threshold, Progress: jc.progress})
	if err != nil {
		return nil, err
	}
	if !rep.DryRun {
		jc.setBytes("freed", rep.BytesFreed)
	}
	return rep, nil
}

func renderGC(env *cmdEnv, rep *snapshot.GCReport, asJSON bool) error {
	if asJSON {
		return writeJSON(env.stdout, rep)
	}
	w := env.stdout
	verb := "freed"
	if rep.DryRun {
		verb = "would free (dry run: nothing changed)"
	}
	fmt.Fprintf(w, "%s %s in %s: %d of %d blocks, %d packs deleted, %d compacted into %d (%s moved)\n", verb,
		bytesIEC(rep.BytesFreed), shortDuration(secondsDuration(rep.Seconds)), rep.BlocksFreed, rep.Blocks,
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
