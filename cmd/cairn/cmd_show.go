package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/snapshot"
)

func newShowCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:      "show",
		Usage:     "show one point and its disks",
		ArgsUsage: "POINT",
		Flags:     []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			if err := args(c, 1, 1, "POINT [--json]"); err != nil {
				return err
			}
			return env.withVault(c, func(v *snapshot.Vault) error {
				return runShow(env, v, c.Args().First(), c.Bool("json"))
			})
		},
	}
}

func runShow(env *cmdEnv, v *snapshot.Vault, ref string, asJSON bool) error {
	p, err := v.Resolve(ref)
	if err != nil {
		return err
	}
	view := newPointView(p)
	if asJSON {
		return writeJSON(env.stdout, view)
	}
	w := env.stdout
	fmt.Fprintf(w, "point:      %s\n", view.Point)
	fmt.Fprintf(w, "time:       %s\n", p.Time.Format("2006-01-02 15:04:05 UTC"))
	fmt.Fprintf(w, "type:       %s\n", view.Type)
	if view.Parent != "" {
		fmt.Fprintf(w, "compared:   %s (this point does not depend on it)\n", view.Parent)
	}
	fmt.Fprintf(w, "size:       %s (%d bytes)\n", bytesIEC(view.Size), view.Size)
	fmt.Fprintf(w, "allocated:  %s\n", bytesIEC(view.Allocated))
	fmt.Fprintf(w, "changed:    %s\n", bytesIEC(view.Changed))
	fmt.Fprintf(w, "added:      %s to the vault\n", bytesIEC(view.Added))
	fmt.Fprintf(w, "took:       %s\n\n", shortDuration(p.Duration))
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "DISK\tSIZE\tALLOCATED\tCHANGED\tADDED\tBLOCK\tSOURCE")
	for _, d := range view.Disks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Name, bytesIEC(d.Size), bytesIEC(d.Allocated),
			bytesIEC(d.Changed), bytesIEC(d.Added), bytesIEC(int64(d.BlockSize)), d.Source)
	}
	return tw.Flush()
}
