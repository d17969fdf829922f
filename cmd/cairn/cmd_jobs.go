package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/urfave/cli/v2"
)

// jobs, job show and cancel talk to the daemon alone: jobs live there.

// needDaemon returns a client of the daemon that owns the vault, or the
// one-line error that says there is none.
func (e *cmdEnv) needDaemon(c *cli.Context, what string) (*daemonClient, error) {
	if cl := e.findDaemon(c); cl != nil {
		return cl, nil
	}
	if s := e.getenv("CAIRN_SOCKET"); s != "" {
		return nil, fmt.Errorf("%s needs a running daemon, and none listens on %s", what, s)
	}
	return nil, fmt.Errorf("%s needs a running daemon, and none serves %s (start one with cairn daemon)", what, e.path(e.vaultDir(c)))
}

func newJobsCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "jobs",
		Usage: "list the daemon's running and recent jobs",
		Description: "Every backup, restore, export, NBD export (cairn nbd), verify, prune, gc, delete, pin and unpin\n" +
			"the daemon runs is a job. Lists the running jobs and the last 10 finished ones (--all: the last 100): ID, kind,\n" +
			"target, state (running, succeeded, failed, canceled, skipped), progress, start (local time),\n" +
			"duration and result. Jobs are kept in the daemon's memory; without a daemon there are none.\n\n" +
			"Examples:\n" +
			"  cairn jobs\n" +
			"  cairn jobs --all --json | jq -r '.[] | select(.state == \"failed\") | .id'",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all", Usage: "every finished job the daemon remembers"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := args(c, 0, 0, "[--all] [--json]"); err != nil {
				return err
			}
			cl, err := env.needDaemon(c, "cairn jobs")
			if err != nil {
				return err
			}
			q := url.Values{}
			if c.Bool("all") {
				q.Set("all", "true")
			}
			var jobs []jobView
			if err := cl.call(c.Context, http.MethodGet, "/jobs", q, nil, &jobs); err != nil {
				return err
			}
			return renderJobs(env, jobs, c.Bool("json"))
		},
	}
}

func renderJobs(env *cmdEnv, jobs []jobView, asJSON bool) error {
	if jobs == nil {
		jobs = []jobView{}
	}
	if asJSON {
		return writeJSON(env.stdout, jobs)
	}
	if len(jobs) == 0 {
		fmt.Fprintln(env.stderr, "no jobs yet")
		return nil
	}
	t := newTable(4, 6)
	t.row("ID", "KIND", "TARGET", "STATE", "PROGRESS", "START", "DURATION", "RESULT")
	for _, j := range jobs {
		t.row(j.ID, j.Kind, orDash(j.Target), string(j.State), jobProgress(j),
			j.Start.In(env.location()).Format("2006-01-02 15:04:05"), shortDuration(secondsDuration(j.Seconds)), jobOutcome(j))
	}
	return t.write(env.stdout)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// jobProgress is a job's share done, while it runs.
func jobProgress(j jobView) string {
	if j.State != jobRunning || j.Progress.Total <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(j.Progress.Done)/float64(j.Progress.Total))
}

// jobOutcome says in a few words how a job ended: its bytes, or its
// error.
func jobOutcome(j jobView) string {
	switch {
	case j.Error != "":
		return j.Error
	case j.State == jobRunning:
		return ""
	case j.BytesKind != "":
		return bytesIEC(j.Bytes) + " " + j.BytesKind
	}
	return "ok"
}

func newJobCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "job",
		Usage: "show one of the daemon's jobs",
		Description: "Examples:\n" +
			"  cairn job show 01k2x7v9q\n" +
			"  cairn job show 01k2x7v9q --json",
		Subcommands: []*cli.Command{
			{
				Name:  "show",
				Usage: "show a job: its state, progress, result, error and log",
				Description: "Shows everything the daemon knows of the job ID (from cairn jobs): its kind, target,\n" +
					"trigger, state, progress, times, result (the --json view of its command) and the last\n" +
					"lines of its log.\n\n" +
					"Examples:\n" +
					"  cairn job show 01k2x7v9q\n" +
					"  cairn job show 01k2x7v9q --json | jq .result",
				ArgsUsage: "ID",
				Flags:     []cli.Flag{jsonFlag()},
				Action: func(c *cli.Context) error {
					if err := args(c, 1, 1, "ID [--json]"); err != nil {
						return err
					}
					cl, err := env.needDaemon(c, "cairn job show")
					if err != nil {
						return err
					}
					var j jobView
					if err := cl.call(c.Context, http.MethodGet, pathOf("jobs", c.Args().First()), nil, nil, &j); err != nil {
						return err
					}
					return renderJob(env, &j, c.Bool("json"))
				},
			},
		},
	}
}

func renderJob(env *cmdEnv, j *jobView, asJSON bool) error {
	if asJSON {
		return writeJSON(env.stdout, j)
	}
	w := env.stdout
	fmt.Fprintf(w, "job:       %s\n", j.ID)
	fmt.Fprintf(w, "kind:      %s\n", j.Kind)
	fmt.Fprintf(w, "target:    %s\n", orDash(j.Target))
	fmt.Fprintf(w, "trigger:   %s\n", j.Trigger)
	fmt.Fprintf(w, "state:     %s\n", j.State)
	if j.Progress.Total > 0 {
		fmt.Fprintf(w, "progress:  %s of %s\n", bytesIEC(j.Progress.Done), bytesIEC(j.Progress.Total))
	}
	fmt.Fprintf(w, "start:     %s\n", j.Start.In(env.location()).Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(w, "duration:  %s\n", shortDuration(secondsDuration(j.Seconds)))
	if j.BytesKind != "" {
		fmt.Fprintf(w, "bytes:     %s %s\n", bytesIEC(j.Bytes), j.BytesKind)
	}
	if j.Error != "" {
		fmt.Fprintf(w, "error:     %s (exit code %d)\n", j.Error, j.ExitCode)
	}
	if len(j.Result) > 0 {
		var b bytes.Buffer
		if err := json.Indent(&b, j.Result, "  ", "  "); err == nil {
			fmt.Fprintf(w, "result:\n  %s\n", b.String())
		}
	}
	if len(j.Log) > 0 {
		fmt.Fprintln(w, "log:")
		if j.LogDropped > 0 {
			fmt.Fprintf(w, "  (%d earlier lines dropped)\n", j.LogDropped)
		}
		for _, l := range j.Log {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	return nil
}

func newCancelCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "cancel",
		Usage: "stop a running job of the daemon",
		Description: "Stops the job ID (from cairn jobs) within moments: what it was writing is not committed\n" +
			"(a backup adds no point, a restore or export leaves no file) and the vault stays consistent.\n" +
			"A command following the job, such as the cairn backup that started it, exits 130.\n\n" +
			"Examples:\n" +
			"  cairn cancel 01k2x7v9q\n" +
			"  cairn jobs --json | jq -r '.[] | select(.kind == \"gc\" and .state == \"running\") | .id' | xargs -r cairn cancel",
		ArgsUsage: "ID",
		Action: func(c *cli.Context) error {
			if err := args(c, 1, 1, "ID"); err != nil {
				return err
			}
			cl, err := env.needDaemon(c, "cairn cancel")
			if err != nil {
				return err
			}
			var j jobView
			if err := cl.call(c.Context, http.MethodPost, pathOf("jobs", c.Args().First(), "cancel"), nil, nil, &j); err != nil {
				return err
			}
			what := j.Kind
			if j.Target != "" {
				what += " " + j.Target
			}
			switch j.State {
			case jobCanceled:
				fmt.Fprintf(env.stdout, "canceled job %s (%s) after %s\n", j.ID, what, shortDuration(secondsDuration(j.Seconds)))
				return nil
			case jobRunning:
				return fmt.Errorf("job %s (%s) has not stopped yet; see cairn job show %s", j.ID, what, j.ID)
			}
			return fmt.Errorf("job %s (%s) %s before it could be canceled", j.ID, what, j.State)
		},
	}
}
