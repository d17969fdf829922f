package main

import (
	"fmt"
	"net/http"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/snapshot"
)

func newStatusCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show whether a daemon serves the vault, what it runs, and each policy's last and next run",
		Description: "Through the daemon that owns the vault: its pid, uptime, socket and mount, the vault's\n" +
			"use of its capacity, the jobs running now, and every policy with its last run and next.\n" +
			"Without a daemon it says so, and shows the vault and its policies (which run only while\n" +
			"a daemon does).\n\n" +
			"Examples:\n" +
			"  cairn status\n" +
			"  cairn status --json",
		ArgsUsage: " ",
		Flags:     []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			if err := args(c, 0, 0, "[--json]"); err != nil {
				return err
			}
			s, err := ask(env, c, http.MethodGet, "/status", nil, nil, func(v *snapshot.Vault) (statusView, error) {
				s := statusView{Vault: v.Dir(), Capacity: capacityView{Used: v.Used(), Total: v.Config().Capacity}, Jobs: []jobView{}}
				ps, err := listPolicies(c.Context, v)
				s.Policies = ps
				if s.Policies == nil {
					s.Policies = []policyView{}
				}
				if err != nil {
					s.Problems = append(s.Problems, oneLine(err))
				}
				return s, nil
			})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(env.stdout, s)
			}
			printStatus(env, s)
			return nil
		},
	}
}

func printStatus(env *cmdEnv, s statusView) {
	w := env.stdout
	fmt.Fprintf(w, "vault:     %s\n", s.Vault)
	if s.Daemon {
		fmt.Fprintf(w, "daemon:    pid %d, cairn %s, up %s (since %s)\n", s.PID, s.Version,
			shortDuration(secondsDuration(s.Uptime)), s.Started.In(env.location()).Format("2006-01-02 15:04"))
		fmt.Fprintf(w, "socket:    %s\n", s.Socket)
		if s.Mount != "" {
			fmt.Fprintf(w, "mount:     %s\n", s.Mount)
		}
	} else {
		fmt.Fprintln(w, "daemon:    not running (policies run only while cairn daemon runs)")
	}
	fmt.Fprintf(w, "capacity:  %s\n", capacityLine(s.Capacity.Used, s.Capacity.Total))
	if s.Daemon {
		if len(s.Jobs) == 0 {
			fmt.Fprintln(w, "jobs:      none running")
		}
		for i, j := range s.Jobs {
			label := "jobs:     "
			if i > 0 {
				label = "          "
			}
			pct := ""
			if j.Progress.Total > 0 {
				pct = fmt.Sprintf(" %.0f%%", 100*float64(j.Progress.Done)/float64(j.Progress.Total))
			}
			fmt.Fprintf(w, "%s %s %s %s (%s), %s%s\n", label, j.ID, j.Kind, j.Target, j.Trigger,
				shortDuration(secondsDuration(j.Seconds).Round(time.Second)), pct)
		}
	}
	for _, p := range s.Problems {
		fmt.Fprintf(w, "problem:   %s\n", p)
	}
	if len(s.Policies) == 0 {
		fmt.Fprintln(w, "policies:  none (make one with cairn policy set)")
		return
	}
	fmt.Fprintln(w)
	printPolicies(env, s.Policies)
}
