package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/snapshot"
)

func newVerifyCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "check that storage holds every point whole; name what is damaged",
		Description: "Checks that every indexed pack is in storage at its size, that every point's record is in\n" +
			"storage and sound, and that every block of every point has a location inside a pack storage\n" +
			"holds. With --data, every stored block is also read back and re-hashed. Exits 1 and names every\n" +
			"damaged point, with its disks and byte ranges, when something is wrong.\n" +
			"Verify never changes data: what it finds damaged it records in the index, so points and show\n" +
			"say so, and the next backup of the same bytes stores a good copy instead of referring to it.\n\n" +
			"Examples:\n" +
			"  cairn verify\n" +
			"  cairn verify --data --json",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "data", Usage: "read back and re-hash every stored block"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := args(c, 0, 0, "[--data] [--json]"); err != nil {
				return err
			}
			req := verifyRequest{Data: c.Bool("data")}
			var rep snapshot.VerifyReport
			return env.job(c, "verify", req, env.newProgress("verify", !req.Data), &rep,
				func() error { return renderVerify(env, &rep, req.Data, c.Bool("json")) })
		},
	}
}

// verifyRequest is a verify job's params.
type verifyRequest struct {
	Data bool `json:"data,omitempty"` // read back and re-hash every stored block
}

func (verifyRequest) target() string { return "" }

// runVerify checks the vault. A vault with problems is an error, with
// the report as the result.
func runVerify(ctx context.Context, v *snapshot.Vault, r verifyRequest, jc *jobContext) (*snapshot.VerifyReport, error) {
	rep, err := v.Verify(ctx, snapshot.VerifyOptions{Data: r.Data, Progress: jc.progress})
	if err != nil {
		return nil, err
	}
	if r.Data {
		jc.setBytes("checked", rep.BytesChecked)
	}
	for _, p := range rep.Problems {
		jc.logf("problem: %s", p.What)
	}
	if !rep.OK() {
		msg := fmt.Sprintf("verify found %d problem(s)", len(rep.Problems))
		if len(rep.DamagedPoints) > 0 {
			msg += "; damaged points: " + strings.Join(rep.DamagedPoints, ", ")
		}
		return rep, fmt.Errorf("%s", msg)
	}
	return rep, nil
}

func renderVerify(env *cmdEnv, rep *snapshot.VerifyReport, data, asJSON bool) error {
	if asJSON {
		return writeJSON(env.stdout, rep)
	}
	what := "structure"
	if data {
		what = fmt.Sprintf("structure and %s of data", bytesIEC(rep.BytesChecked))
	}
	fmt.Fprintf(env.stdout, "checked %s: %d points, %d packs, %d blocks\n", what, rep.Points, rep.Packs, rep.Blocks)
	for _, n := range rep.Notes {
		fmt.Fprintf(env.stdout, "note: %s\n", n)
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(env.stdout, "problem: %s", p.What)
		if len(p.Points) > 0 {
			fmt.Fprintf(env.stdout, " (affects %s)", strings.Join(p.Points, ", "))
		}
		fmt.Fprintln(env.stdout)
	}
	printDamage(env.stdout, rep.Damaged)
	if rep.OK() {
		fmt.Fprintln(env.stdout, "no problems found")
	} else if len(rep.Damaged) > 0 {
		fmt.Fprintln(env.stdout, "the damaged ranges are recorded: the next backup of the same data stores good copies,\n"+
			"and restore --skip-damaged restores everything else")
	}
	return nil
}
