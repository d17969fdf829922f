package main

import (
	"context"
	"fmt"
	"strings"

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
			var res map[string][]string
			return env.job(c, "delete", refsRequest{Points: c.Args().Slice()}, nil, &res,
				func() error { return renderRefs(env, res, "deleted", c.Bool("json")) })
		},
	}
}

// refsRequest is the params of a delete, pin or unpin job: the points,
// as references (web01@latest, an ID prefix).
type refsRequest struct {
	Points []string `json:"points"`
}

func (r refsRequest) target() string { return strings.Join(r.Points, ",") }

func (r *refsRequest) check() error {
	if len(r.Points) == 0 {
		return usagef("no points given")
	}
	return nil
}

// runDelete deletes the points: {"deleted": [names]}.
func runDelete(_ context.Context, v *snapshot.Vault, r refsRequest, jc *jobContext) (map[string][]string, error) {
	points, err := resolveAll(v, r.Points)
	if err != nil {
		return nil, err
	}
	if err := v.Delete(points); err != nil {
		return nil, err
	}
	return map[string][]string{"deleted": pointNames(jc, points, "deleted")}, nil
}

// pointNames names points, logging verb for each, and makes them the
// job's target.
func pointNames(jc *jobContext, points []*snapshot.Point, verb string) []string {
	names := make([]string, len(points))
	for i, p := range points {
		names[i] = p.Name()
		jc.logf("%s %s", verb, p.Name())
	}
	jc.setTarget(strings.Join(names, ","))
	return names
}

// renderRefs prints what a delete, pin or unpin did: {"VERB": [names]}
// with --json, else "VERB NAME" lines.
func renderRefs(env *cmdEnv, res map[string][]string, verb string, asJSON bool) error {
	names := res[verb]
	if names == nil {
		names = []string{}
	}
	if asJSON {
		return writeJSON(env.stdout, map[string]any{verb: names})
	}
	for _, n := range names {
		fmt.Fprintf(env.stdout, "%s %s\n", verb, n)
	}
	return nil
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
