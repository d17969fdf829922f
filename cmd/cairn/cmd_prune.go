package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/snapshot"
)

const pruneRulesHelp = "Each rule keeps the newest point of each of its periods, counting back from the newest\n" +
	"point, for as many periods as it says; only periods that hold a point count. Periods are\n" +
	"hours, days, ISO weeks (Monday to Sunday), months and years of local time (--tz sets the zone).\n" +
	"--keep-last N keeps the newest N points; --keep-within SPAN keeps every point taken within SPAN\n" +
	"of the newest (SPAN: 12h, 7d, 2w, 6m, 1y, or sums such as 1y6m). Each rule is applied on its\n" +
	"own: a point kept by one still counts for the others. A rule that runs out of points before\n" +
	"its count keeps the oldest point too. Whatever the rules, the newest point of each resource\n" +
	"and every pinned point (cairn pin) are kept. These are restic's forget rules, plus those two.\n" +
	"Giving no rule is an error, never \"delete everything\"."

func newPruneCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "prune",
		Usage: "delete the points retention rules do not keep",
		Description: "Applies the rules to each resource NAME (every resource when none is given) and deletes the\n" +
			"points they do not keep; --dry-run lists every point as kept or removed, with the rules that\n" +
			"decided, and deletes nothing. The space of blocks only removed points used is freed by\n" +
			"cairn gc.\n\n" + pruneRulesHelp + "\n\n" +
			"Examples:\n" +
			"  cairn prune --keep-daily 7 --keep-weekly 4 --dry-run\n" +
			"  cairn prune web01 --keep-last 10 --keep-monthly 12\n" +
			"  cairn prune --keep-within 30d --tz Europe/Berlin --json",
		ArgsUsage: "[NAME...]",
		Flags:     append(retentionFlags(), &cli.BoolFlag{Name: "dry-run", Usage: "list what would be kept and removed; delete nothing"}, jsonFlag()),
		Action: func(c *cli.Context) error {
			rules, err := retentionRules(c)
			if err != nil {
				return err
			}
			return env.withVault(c, func(v *snapshot.Vault) error {
				return runPrune(env, v, c.Args().Slice(), rules, c.Bool("dry-run"), c.Bool("json"))
			})
		},
	}
}

// retentionFlags are the --keep-* rules and --tz, shared by prune and
// (later) policies.
func retentionFlags() []cli.Flag {
	count := func(name, what string) cli.Flag {
		return &cli.IntFlag{Name: name, Usage: "keep the newest point of each of the last N " + what}
	}
	return []cli.Flag{
		&cli.IntFlag{Name: "keep-last", Usage: "keep the newest N points"},
		&cli.StringFlag{Name: "keep-within", Usage: "keep every point within SPAN of the newest (e.g. 7d, 12h, 2w, 1y6m)"},
		count("keep-hourly", "hours"),
		count("keep-daily", "days"),
		count("keep-weekly", "ISO weeks"),
		count("keep-monthly", "months"),
		count("keep-yearly", "years"),
		&cli.StringFlag{Name: "tz", Usage: "time zone of the periods, e.g. Europe/Berlin (default: local)"},
	}
}

// retentionRules reads the --keep-* flags; a bad value is a wrong
// command line.
func retentionRules(c *cli.Context) (snapshot.Rules, error) {
	r := snapshot.Rules{Last: c.Int("keep-last"), Hourly: c.Int("keep-hourly"), Daily: c.Int("keep-daily"),
		Weekly: c.Int("keep-weekly"), Monthly: c.Int("keep-monthly"), Yearly: c.Int("keep-yearly")}
	for _, f := range []string{"keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly"} {
		if c.IsSet(f) && c.Int(f) <= 0 {
			return r, usagef("--%s %d: give a count of 1 or more", f, c.Int(f))
		}
	}
	if s := c.String("keep-within"); s != "" {
		span, err := snapshot.ParseSpan(s)
		if err != nil {
			return r, usagef("--keep-within: %v", err)
		}
		r.Within = span
	}
	if tz := c.String("tz"); tz != "" {
		loc, err := time.LoadLocation(tz)
		if err != nil {
			return r, usagef("--tz %q: unknown time zone (use an IANA name such as Europe/Berlin or UTC)", tz)
		}
		r.Location = loc
	}
	if err := r.Check(); err != nil {
		return r, usageError{err}
	}
	return r, nil
}

func runPrune(env *cmdEnv, v *snapshot.Vault, names []string, rules snapshot.Rules, dryRun, asJSON bool) error {
	if rules.Location == nil {
		rules.Location = env.location()
	}
	for _, n := range names {
		if err := snapshot.CheckName("resource", n); err != nil {
			return usagef("%v", err)
		}
	}
	rep, err := v.Prune(names, rules, dryRun)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(env.stdout, rep)
	}
	w := env.stdout
	for _, r := range rep.Resources {
		t := newTable()
		for _, d := range r.Decisions {
			verb := "remove"
			if d.Keep {
				verb = "keep"
			}
			t.row(verb, d.Name, d.Point.Time.In(rules.Location).Format("2006-01-02 15:04 MST"), strings.Join(d.Reasons, ", "))
		}
		if err := t.write(w); err != nil {
			return err
		}
	}
	verb := "removed"
	if dryRun {
		verb = "would remove (dry run: nothing deleted)"
	}
	fmt.Fprintf(w, "%s %d of %d points (%s)", verb, rep.Removed, rep.Removed+rep.Kept, rep.Rules)
	if rep.Removed > 0 && !dryRun {
		fmt.Fprint(w, "; cairn gc frees the space only they used")
	}
	fmt.Fprintln(w)
	return nil
}
