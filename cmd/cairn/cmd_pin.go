package main

import (
	"context"

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
			var res map[string][]string
			return env.job(c, name, refsRequest{Points: c.Args().Slice()}, nil, &res,
				func() error { return renderRefs(env, res, name+"ned", c.Bool("json")) })
		},
	}
}

// runPin pins the points: {"pinned": [names]}.
func runPin(_ context.Context, v *snapshot.Vault, r refsRequest, jc *jobContext) (map[string][]string, error) {
	return setPinned(v, r, jc, true)
}

// runUnpin unpins the points: {"unpinned": [names]}.
func runUnpin(_ context.Context, v *snapshot.Vault, r refsRequest, jc *jobContext) (map[string][]string, error) {
	return setPinned(v, r, jc, false)
}

func setPinned(v *snapshot.Vault, r refsRequest, jc *jobContext, pin bool) (map[string][]string, error) {
	points, err := resolveAll(v, r.Points)
	if err != nil {
		return nil, err
	}
	if err := v.SetPinned(points, pin); err != nil {
		return nil, err
	}
	verb := "pinned"
	if !pin {
		verb = "unpinned"
	}
	return map[string][]string{verb: pointNames(jc, points, verb)}, nil
}
