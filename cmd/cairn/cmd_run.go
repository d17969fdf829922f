package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func newRunCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "run a policy's backup now: hooks, backup, retention",
		Description: "Runs the policy as its schedule would (freeze hook, backup, thaw hook, its retention rules,\n" +
			"then gc when it would free more than 5% of the vault), but leaves the schedule's slots alone.\n" +
			"Through the daemon it is a job (see cairn jobs); Ctrl-C cancels it, and the thaw hook still\n" +
			"runs. The run's log (hook output included) goes to stderr. A run of the policy that goes on\n" +
			"already is not doubled: this one is skipped, says so, and exits 1.\n\n" +
			"Examples:\n" +
			"  cairn run web01\n" +
			"  cairn run db01 --json",
		ArgsUsage: "NAME",
		Flags:     []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			if err := args(c, 1, 1, "NAME [--json]"); err != nil {
				return err
			}
			req := runRequest{Policy: c.Args().First()}
			if err := req.check(); err != nil {
				return err
			}
			if !env.quiet {
				env.jobLog = env.stderr
			}
			var res runResult
			return env.job(c, "run", req, env.newProgress("backup", false), &res, func() error {
				if c.Bool("json") {
					return writeJSON(env.stdout, res)
				}
				if res.Point != nil {
					fmt.Fprintln(env.stdout, res.Point.Point)
				}
				return nil
			})
		},
	}
}
