package main

import (
	"context"
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
			rr, err := retentionFlagValues(env, c)
			if err != nil {
				return err
			}
			req := pruneRequest{Resources: c.Args().Slice(), Rules: rr, DryRun: c.Bool("dry-run")}
			if err := req.check(); err != nil {
				return err
			}
			loc := env.location()
			if rr.TZ != "" {
				loc, _ = time.LoadLocation(rr.TZ)
			}
			var rep snapshot.PruneReport
			return env.job(c, "prune", req, nil, &rep, func() error { return renderPrune(env, &rep, loc, c.Bool("json")) })
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

// retentionRequest is a set of retention rules as the API carries them:
// each count 0 when the rule is not given.
type retentionRequest struct {
	KeepLast    int    `json:"keep_last,omitempty"`
	KeepWithin  string `json:"keep_within,omitempty"` // a span: 12h, 7d, 2w, 6m, 1y, 1y6m
	KeepHourly  int    `json:"keep_hourly,omitempty"`
	KeepDaily   int    `json:"keep_daily,omitempty"`
	KeepWeekly  int    `json:"keep_weekly,omitempty"`
	KeepMonthly int    `json:"keep_monthly,omitempty"`
	KeepYearly  int    `json:"keep_yearly,omitempty"`
	// TZ is the IANA zone periods are reckoned in; "" is the local
	// time of the process that prunes.
	TZ string `json:"tz,omitempty"`
}

// retentionFlagValues reads the --keep-* flags and --tz; a bad value is
// a wrong command line. Without --tz, the user's $TZ goes along, so the
// periods are the user's days whether or not a daemon prunes.
func retentionFlagValues(env *cmdEnv, c *cli.Context) (retentionRequest, error) {
	r := retentionRequest{KeepLast: c.Int("keep-last"), KeepWithin: c.String("keep-within"), KeepHourly: c.Int("keep-hourly"),
		KeepDaily: c.Int("keep-daily"), KeepWeekly: c.Int("keep-weekly"), KeepMonthly: c.Int("keep-monthly"),
		KeepYearly: c.Int("keep-yearly"), TZ: c.String("tz")}
	for _, f := range []string{"keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly"} {
		if c.IsSet(f) && c.Int(f) <= 0 {
			return r, usagef("--%s %d: give a count of 1 or more", f, c.Int(f))
		}
	}
	if r.TZ == "" {
		if tz := strings.TrimPrefix(env.getenv("TZ"), ":"); tz != "" {
			if _, err := time.LoadLocation(tz); err == nil {
				r.TZ = tz
			}
		}
	}
	_, err := r.rules()
	return r, err
}

// rules checks the rules and returns them for snapshot.
func (r retentionRequest) rules() (snapshot.Rules, error) {
	rules := snapshot.Rules{Last: r.KeepLast, Hourly: r.KeepHourly, Daily: r.KeepDaily,
		Weekly: r.KeepWeekly, Monthly: r.KeepMonthly, Yearly: r.KeepYearly}
	for _, n := range []int{r.KeepLast, r.KeepHourly, r.KeepDaily, r.KeepWeekly, r.KeepMonthly, r.KeepYearly} {
		if n < 0 {
			return rules, usagef("a count of %d: give a count of 1 or more", n)
		}
	}
	if s := r.KeepWithin; s != "" {
		span, err := snapshot.ParseSpan(s)
		if err != nil {
			return rules, usagef("--keep-within: %v", err)
		}
		rules.Within = span
	}
	rules.Location = time.Local
	if r.TZ != "" {
		loc, err := time.LoadLocation(r.TZ)
		if err != nil {
			return rules, usagef("--tz %q: unknown time zone (use an IANA name such as Europe/Berlin or UTC)", r.TZ)
		}
		rules.Location = loc
	}
	if err := rules.Check(); err != nil {
		return rules, usageError{err}
	}
	return rules, nil
}

// pruneRequest is a prune job's params.
type pruneRequest struct {
	Resources []string         `json:"resources,omitempty"` // none: every resource
	Rules     retentionRequest `json:"rules"`
	DryRun    bool             `json:"dry_run,omitempty"`
}

func (r pruneRequest) target() string { return strings.Join(r.Resources, ",") }

func (r *pruneRequest) check() error {
	for _, n := range r.Resources {
		if err := snapshot.CheckName("resource", n); err != nil {
			return usagef("%v", err)
		}
	}
	_, err := r.Rules.rules()
	return err
}

func runPrune(_ context.Context, v *snapshot.Vault, r pruneRequest, jc *jobContext) (*snapshot.PruneReport, error) {
	rules, err := r.Rules.rules()
	if err != nil {
		return nil, err
	}
	rep, err := v.Prune(r.Resources, rules, r.DryRun)
	if err != nil {
		return nil, err
	}
	if !r.DryRun {
		for _, c := range rep.Resources {
			for _, d := range c.Decisions {
				if !d.Keep {
					jc.logf("removed %s", d.Name)
				}
			}
		}
	}
	return rep, nil
}

// renderPrune prints each point's decision, its time in loc (the zone
// of the rules).
func renderPrune(env *cmdEnv, rep *snapshot.PruneReport, loc *time.Location, asJSON bool) error {
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
			at := d.Time
			if tm, err := time.Parse(time.RFC3339, d.Time); err == nil {
				at = tm.In(loc).Format("2006-01-02 15:04 MST")
			}
			t.row(verb, d.Name, at, strings.Join(d.Reasons, ", "))
		}
		if err := t.write(w); err != nil {
			return err
		}
	}
	verb := "removed"
	if rep.DryRun {
		verb = "would remove (dry run: nothing deleted)"
	}
	fmt.Fprintf(w, "%s %d of %d points (%s)", verb, rep.Removed, rep.Removed+rep.Kept, rep.Rules)
	if rep.Removed > 0 && !rep.DryRun {
		fmt.Fprint(w, "; cairn gc frees the space only they used")
	}
	fmt.Fprintln(w)
	return nil
}
