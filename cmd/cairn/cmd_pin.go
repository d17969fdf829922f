package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/snapshot"
)

func newPinCommand(env *cmdEnv, pin bool) *cli.Command {
	name, usage, desc := "pin", "keep points whatever retention rules say", "A pinned point is kept by every prune and refused by delete until it is unpinned.\n\n"
	if !pin {
		name, usage, desc = "unpin", "let retention rules decide about points again", "Undoes cairn pin.\n\n"
	}
	return &cli.Command{
		Name:  name,
		Usage: usage,
		Description: desc + "Examples:\n" +
			"  cairn " + name + " web01@20261121T100000Z\n" +
			"  cairn " + name + " web01@latest db01@20261121T10 --json",
		ArgsUsage: "POINT...",
		Flags:     []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			if err := args(c, 1, -1, "POINT..."); err != nil {
				return err
			}
			return env.withVault(c, func(v *snapshot.Vault) error {
				points, err := resolveAll(v, c.Args().Slice())
				if err != nil {
					return err
				}
				if err := v.SetPinned(points, pin); err != nil {
					return err
				}
				names := make([]string, len(points))
				for i, p := range points {
					names[i] = p.Name()
				}
				if c.Bool("json") {
					return writeJSON(env.stdout, map[string]any{name + "ned": names})
				}
				for _, n := range names {
					fmt.Fprintf(env.stdout, "%sned %s\n", name, n)
				}
				return nil
			})
		},
	}
}

// resolveAll resolves every reference first, each point once: an unknown
// one fails the command before anything changes.
func resolveAll(v *snapshot.Vault, refs []string) ([]*snapshot.Point, error) {
	var points []*snapshot.Point
	seen := map[string]bool{}
	for _, r := range refs {
		p, err := v.Resolve(r)
		if err != nil {
			return nil, err
		}
		if !seen[p.Name()] {
			seen[p.Name()] = true
			points = append(points, p)
		}
	}
	return points, nil
}
