package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/snapshot"
)

func newDeleteCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "delete",
		Usage: "delete points; every other point stays complete",
		Description: "All POINTs are resolved first; if any is unknown, nothing is deleted. Every other point\n" +
			"stays complete, whichever points are deleted.\n\n" +
			"Examples:\n" +
			"  cairn delete web01@20261121T100000Z\n" +
			"  cairn delete web01@20261121T10 web01@20261122T10 --json",
		ArgsUsage: "POINT...",
		Flags:     []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			if err := args(c, 1, -1, "POINT..."); err != nil {
				return err
			}
			return env.withVault(c, func(v *snapshot.Vault) error {
				return runDelete(env, v, c.Args().Slice(), c.Bool("json"))
			})
		},
	}
}

func runDelete(env *cmdEnv, v *snapshot.Vault, refs []string, asJSON bool) error {
	var points []*snapshot.Point
	seen := map[string]bool{}
	for _, r := range refs {
		p, err := v.Resolve(r)
		if err != nil {
			return err
		}
		if !seen[p.Name()] {
			seen[p.Name()] = true
			points = append(points, p)
		}
	}
	if err := v.Delete(points); err != nil {
		return err
	}
	names := make([]string, len(points))
	for i, p := range points {
		names[i] = p.Name()
	}
	if asJSON {
		return writeJSON(env.stdout, map[string]any{"deleted": names})
	}
	for _, n := range names {
		fmt.Fprintf(env.stdout, "deleted %s\n", n)
	}
	return nil
}
