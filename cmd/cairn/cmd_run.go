package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/snapshot"
	"github.com/cairn-backup/cairn/snapshot/policy"
)

func newRunCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "run a policy's backup now: hooks, backup, retention",
		Description: "Runs the policy as its schedule would (freeze hook, backup, thaw hook, its retention rules,\n" +
			"then gc when it would free more than 5% of the vault), but leaves the schedule's slots alone.\n" +
			"Through the daemon it is a job (see cairn jobs); Ctrl-C cancels it. A run of the policy that\n" +
			"goes on already is not doubled: this one is skipped, and says so.\n\n" +
			"Examples:\n" +
			"  cairn run web01\n" +
			"  cairn run db01 --json",
		ArgsUsage: "NAME",
		Flags:     []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			if err := args(c, 1, 1, "NAME [--json]"); err != nil {
				return err
			}
			return env.withVault(c, func(v *snapshot.Vault) error {
				p, err := policy.Load(c.Context, v.Store().Storage(), c.Args().First())
				if err != nil {
					return err
				}
				bar := env.newProgress("backup", false)
				rep := &foregroundReport{bar: bar, w: env.stderr, quiet: env.quiet || !env.terminal}
				r := &policyRunner{v: v, env: env, clock: time.Now, gcShare: defaultGCShare}
				st, start := v.Store().Storage(), time.Now()
				if err := recordRunStart(c.Context, st, p.Name, start); err != nil {
					return err
				}
				res, runErr := r.run(c.Context, p, rep)
				bar.done()
				if err := recordRunEnd(context.WithoutCancel(c.Context), st, p.Name, start, time.Now(), res, runErr); err != nil {
					env.warnf("policy %s: record its run: %v", p.Name, err)
				}
				if c.Bool("json") {
					if err := writeJSON(env.stdout, res); err != nil {
						return err
					}
				} else if res.Point != nil {
					fmt.Fprintln(env.stdout, res.Point.Point)
				}
				return runErr
			})
		},
	}
}

// foregroundReport is a run's report for a person at a terminal: a
// progress bar and the run's log lines (hook output included) on stderr.
type foregroundReport struct {
	bar   *progressBar
	w     io.Writer
	quiet bool
}

func (r *foregroundReport) Progress(done, total int64) { r.bar.update(done, total) }

func (r *foregroundReport) Logf(format string, args ...any) {
	if !r.quiet {
		fmt.Fprintf(r.w, format+"\n", args...)
	}
}

func (r *foregroundReport) Log() io.Writer {
	if r.quiet {
		return io.Discard
	}
	return r.w
}
