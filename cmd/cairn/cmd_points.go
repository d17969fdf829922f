package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/snapshot"
)

func newPointsCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:      "points",
		Usage:     "list backup points, oldest first",
		ArgsUsage: "[NAME]",
		Flags:     []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			if err := args(c, 0, 1, "[NAME] [--json]"); err != nil {
				return err
			}
			return env.withVault(c, func(v *snapshot.Vault) error {
				return runPoints(env, v, c.Args().First(), c.Bool("json"))
			})
		},
	}
}

func runPoints(env *cmdEnv, v *snapshot.Vault, name string, asJSON bool) error {
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
	if asJSON {
		views := make([]pointView, 0, len(points))
		for _, p := range points {
			views = append(views, newPointView(p))
		}
		return writeJSON(env.stdout, views)
	}
	if len(points) == 0 {
		fmt.Fprintln(env.stderr, "no points yet (make one with cairn backup)")
		return nil
	}
	tw := tabwriter.NewWriter(env.stdout, 2, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "POINT\tTIME (UTC)\tTYPE\tDISKS\tSIZE\tALLOCATED\tCHANGED\tADDED\t")
	for _, p := range points {
		var disks []string
		for _, d := range p.Disks {
			disks = append(disks, d.Name)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", p.Name(), p.Time.Format("2006-01-02 15:04:05"),
			pointType(p), strings.Join(disks, ","), bytesIEC(p.Size()), bytesIEC(p.Allocated()),
			bytesIEC(p.Changed()), bytesIEC(p.Added))
	}
	return tw.Flush()
}
