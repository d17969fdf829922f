package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/snapshot"
	"github.com/cairn-backup/cairn/snapshot/policy"
)

const policySetUsage = "NAME --source [DISK=]PATH... (--every 6h | --at 02:00[,14:00] [--days mon,wed,fri]) [--tz ZONE] --keep-... " +
	"[--pre-hook CMD] [--post-hook CMD] [--hook-timeout 60s] [--hook-failure abort|continue] [--paused]"

func newPolicyCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "policy",
		Usage: "define, list, show and remove the backup policies the daemon runs on their schedules",
		Description: "A policy backs up its sources into the resource of its name on a schedule, freezing and thawing\n" +
			"what writes to them with hooks, and applies its retention rules after each successful backup\n" +
			"(then gc, when it would free more than 5% of the vault). Policies live in the vault.\n\n" +
			"Examples:\n" +
			"  cairn policy set web01 --source vda=/dev/vg0/web01 --every 6h --keep-daily 7 --keep-weekly 4\n" +
			"  cairn policy list\n" +
			"  cairn policy show web01 --json\n" +
			"  cairn policy rm web01",
		Subcommands: []*cli.Command{newPolicySetCommand(env), newPolicyListCommand(env), newPolicyShowCommand(env), newPolicyRmCommand(env)},
	}
}

func newPolicySetCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "set",
		Usage: "create or change a policy",
		Description: "--every runs it every so long (6h, 30m, 1d), on a grid of elapsed time, so a change of summer\n" +
			"time moves nothing; --at runs it at times of day (02:00,14:00) in --tz (default: local), on\n" +
			"--days only (mon,wed,fri or mon-fri; default every day). A time the clock skips in spring runs\n" +
			"when the clock jumps past it; one it repeats in autumn runs once. Runs missed while the daemon\n" +
			"is down run once when it starts, and two runs of a policy never overlap.\n\n" +
			pruneRulesHelp + "\n\n" +
			"Hooks: --pre-hook runs before the disks are read (freeze a database, flush and stop a writer),\n" +
			"--post-hook after the backup whatever its outcome (thaw). CMD is split into words as a shell\n" +
			"would, but runs without one (write sh -c '...' for one), as the daemon's user, with\n" +
			"CAIRN_POLICY, CAIRN_RESOURCE, CAIRN_VAULT, CAIRN_HOOK, CAIRN_DISKS and, after, CAIRN_RESULT and\n" +
			"CAIRN_POINT in its environment; each gets --hook-timeout. A failing pre-hook skips the backup\n" +
			"with --hook-failure abort (the default), or gives a crash-consistent point with continue; a point\n" +
			"whose pre-hook succeeded is application-consistent.\n\n" +
			"Everything is checked now, not at the first run: sources, hooks, times, rules.\n\n" +
			"Examples:\n" +
			"  cairn policy set web01 --source vda=/dev/vg0/web01 --every 6h --keep-daily 7 --keep-weekly 4\n" +
			"  cairn policy set db01 --source /var/lib/libvirt/images/db01.qcow2 --at 02:00 --days mon-fri \\\n" +
			"      --tz Europe/Berlin --keep-daily 5 --keep-monthly 12 \\\n" +
			"      --pre-hook '/usr/local/bin/db-freeze' --post-hook '/usr/local/bin/db-thaw' --hook-timeout 2m",
		ArgsUsage: "NAME",
		Flags: append([]cli.Flag{
			&cli.StringSliceFlag{Name: "source", Usage: "[DISK=]PATH of a disk to back up (repeat for several)"},
			&cli.StringFlag{Name: "every", Usage: "run every DURATION (e.g. 6h, 30m, 1d)"},
			&cli.StringFlag{Name: "at", Usage: "run at HH:MM[,HH:MM...] local time"},
			&cli.StringFlag{Name: "days", Usage: "with --at: only on these days (mon,wed,fri or mon-fri)"},
			&cli.StringFlag{Name: "pre-hook", Usage: "CMD run before the disks are read"},
			&cli.StringFlag{Name: "post-hook", Usage: "CMD run after the backup, whatever its outcome"},
			&cli.StringFlag{Name: "hook-timeout", Usage: "time each hook may take", Value: "60s"},
			&cli.StringFlag{Name: "hook-failure", Usage: "abort or continue", Value: "abort"},
			&cli.BoolFlag{Name: "paused", Usage: "keep the policy but do not run it on its schedule"},
			jsonFlag(),
		}, retentionFlags()...),
		Action: func(c *cli.Context) error {
			if err := args(c, 1, 1, policySetUsage); err != nil {
				return err
			}
			p, err := policyFromFlags(env, c)
			if err != nil {
				return err
			}
			view, err := ask(env, c, http.MethodPut, "/policies/"+pathSegment(p.Name), nil, p,
				func(v *snapshot.Vault) (policyView, error) { return setPolicy(c.Context, v, p) })
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(env.stdout, view)
			}
			fmt.Fprintf(env.stdout, "policy %s set: %s; next run %s\n", view.Policy.Name, view.Schedule, formatNext(env, view.Next))
			return nil
		},
	}
}

// policyFromFlags builds a policy from policy set's flags; every mistake
// is a wrong command line.
func policyFromFlags(env *cmdEnv, c *cli.Context) (*policy.Policy, error) {
	p := &policy.Policy{Name: c.Args().First(), Paused: c.Bool("paused")}
	if err := snapshot.CheckName("resource", p.Name); err != nil {
		return nil, usagef("policy name: %v", err)
	}
	for _, s := range c.StringSlice("source") {
		src, err := policy.ParseSource(s)
		if err != nil {
			return nil, usagef("--source %q: %v", s, err)
		}
		src.Path = env.path(src.Path)
		p.Sources = append(p.Sources, src)
	}
	if len(p.Sources) == 0 {
		return nil, usagef("--source [DISK=]PATH is required: what the policy backs up")
	}
	var err error
	switch every, at := c.String("every"), c.String("at"); {
	case every != "" && at != "":
		return nil, usagef("--every and --at: give one of them")
	case every != "":
		if c.String("days") != "" {
			return nil, usagef("--days goes with --at, not --every")
		}
		if p.Schedule.Every, err = policy.ParseEvery(every); err != nil {
			return nil, usagef("--every: %v", err)
		}
	case at != "":
		if p.Schedule.At, err = policy.ParseAt(at); err != nil {
			return nil, usagef("--at: %v", err)
		}
		if d := c.String("days"); d != "" {
			if p.Schedule.Days, err = policy.ParseDays(d); err != nil {
				return nil, usagef("--days: %v", err)
			}
		}
	default:
		return nil, usagef("a schedule is required: --every DURATION or --at HH:MM")
	}
	p.Schedule.TZ = c.String("tz")
	rr, err := retentionFlagValues(env, c)
	if err != nil {
		return nil, err
	}
	if p.Retention, err = rr.rules(); err != nil {
		return nil, err
	}
	p.Retention.Location = nil // the schedule's TZ decides
	for flag, dst := range map[string]*[]string{"pre-hook": &p.PreHook, "post-hook": &p.PostHook} {
		if s := c.String(flag); s != "" {
			if *dst, err = splitWords(s); err != nil {
				return nil, usagef("--%s: %v", flag, err)
			}
		}
	}
	if p.HookTimeout, err = time.ParseDuration(c.String("hook-timeout")); err != nil || p.HookTimeout <= 0 {
		return nil, usagef("--hook-timeout %q: give a duration such as 60s or 5m", c.String("hook-timeout"))
	}
	if p.HookFailure, err = policy.ParseOnFailure(c.String("hook-failure")); err != nil {
		return nil, usagef("--hook-failure: %v", err)
	}
	if err := p.Check(); err != nil {
		return nil, usageError{err}
	}
	return p, nil
}

// policyView is a policy as list, show and --json print it.
type policyView struct {
	Policy   *policy.Policy `json:"policy"`
	Schedule string         `json:"schedule"`
	State    policy.State   `json:"state"`
	Next     *time.Time     `json:"next_run,omitempty"`
}

func newPolicyView(p *policy.Policy, st policy.State, now time.Time) policyView {
	pv := policyView{Policy: p, Schedule: p.Schedule.String(), State: st}
	if !p.Paused {
		if n := p.Schedule.Next(now); !n.IsZero() {
			pv.Next = &n
		}
	}
	return pv
}

// setPolicy validates p on this machine (its sources, its hooks on the
// daemon's PATH) and saves it, keeping an old one's creation time.
func setPolicy(ctx context.Context, v *snapshot.Vault, p *policy.Policy) (policyView, error) {
	if err := p.Check(); err != nil {
		return policyView{}, usageError{err}
	}
	st := v.Store().Storage()
	now := v.Now()
	p.Created, p.Updated = now, now
	if old, err := policy.Load(ctx, st, p.Name); err == nil {
		p.Created = old.Created
	} else if !errors.Is(err, policy.ErrNotFound) {
		return policyView{}, err
	}
	// The daemon runs the hooks, with its own PATH: this process's, when
	// it is the daemon serving the command.
	if err := p.Validate(os.Getenv("PATH")); err != nil {
		if errors.Is(err, policy.ErrInvalid) {
			return policyView{}, usageError{err}
		}
		return policyView{}, err
	}
	if err := policy.Save(ctx, st, p); err != nil {
		return policyView{}, err
	}
	state, _ := policy.LoadState(ctx, st, p.Name)
	return newPolicyView(p, state, now), nil
}

func newPolicyListCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:        "list",
		Usage:       "list the policies with their last and next runs",
		Description: "Examples:\n  cairn policy list\n  cairn policy list --json",
		ArgsUsage:   " ",
		Flags:       []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			if err := args(c, 0, 0, "[--json]"); err != nil {
				return err
			}
			views, err := ask(env, c, http.MethodGet, "/policies", nil, nil,
				func(v *snapshot.Vault) ([]policyView, error) { return listPolicies(c.Context, v) })
			if err != nil && views == nil {
				return err
			}
			if c.Bool("json") {
				if werr := writeJSON(env.stdout, views); werr != nil {
					return werr
				}
			} else {
				printPolicies(env, views)
			}
			return err
		},
	}
}

func listPolicies(ctx context.Context, v *snapshot.Vault) ([]policyView, error) {
	st := v.Store().Storage()
	ps, bad, err := policy.List(ctx, st)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	views := make([]policyView, 0, len(ps))
	for _, p := range ps {
		state, err := policy.LoadState(ctx, st, p.Name)
		if err != nil && !errors.Is(err, policy.ErrNotFound) {
			return nil, err
		}
		views = append(views, newPolicyView(p, state, now))
	}
	if len(bad) > 0 {
		return views, fmt.Errorf("policy %s cannot be read: %v (cairn policy set it again, or cairn policy rm it)", bad[0].Name, bad[0].Err)
	}
	return views, nil
}

// showPolicy returns the view of one policy.
func showPolicy(ctx context.Context, v *snapshot.Vault, name string) (policyView, error) {
	st := v.Store().Storage()
	p, err := policy.Load(ctx, st, name)
	if err != nil {
		return policyView{}, badPolicyName(err)
	}
	state, err := policy.LoadState(ctx, st, name)
	if err != nil && !errors.Is(err, policy.ErrNotFound) {
		return policyView{}, err
	}
	return newPolicyView(p, state, time.Now()), nil
}

// removePolicy deletes a policy; its points stay.
func removePolicy(ctx context.Context, v *snapshot.Vault, name string) (removedView, error) {
	st := v.Store().Storage()
	if _, err := policy.Load(ctx, st, name); err != nil {
		return removedView{}, badPolicyName(err)
	}
	if err := policy.Delete(ctx, st, name); err != nil {
		return removedView{}, err
	}
	return removedView{Removed: name}, nil
}

// badPolicyName makes a name that cannot be a policy's (policy.Load's
// ErrInvalid) the user's mistake: exit code 2, 400 from the daemon.
func badPolicyName(err error) error {
	if errors.Is(err, policy.ErrInvalid) {
		return usageError{err}
	}
	return err
}

// removedView is the answer of DELETE /v1/policies/NAME.
type removedView struct {
	Removed string `json:"removed"`
}

func printPolicies(env *cmdEnv, views []policyView) {
	if len(views) == 0 {
		fmt.Fprintln(env.stderr, "no policies yet (make one with cairn policy set)")
		return
	}
	t := newTable()
	t.row("POLICY", "SCHEDULE", "LAST RUN", "RESULT", "NEXT RUN")
	for _, pv := range views {
		last, result := "never", ""
		if !pv.State.LastStart.IsZero() {
			last, result = pv.State.LastStart.In(env.location()).Format("2006-01-02 15:04"), string(pv.State.LastResult)
			if pv.State.LastEnd.IsZero() {
				result = "running"
			}
		}
		next := "paused"
		if pv.Next != nil {
			next = pv.Next.In(env.location()).Format("2006-01-02 15:04")
		}
		t.row(pv.Policy.Name, pv.Schedule, last, result, next)
	}
	t.write(env.stdout)
}

func newPolicyShowCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:        "show",
		Usage:       "show one policy in full, with its last and next runs",
		Description: "Examples:\n  cairn policy show web01\n  cairn policy show web01 --json",
		ArgsUsage:   "NAME",
		Flags:       []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			if err := args(c, 1, 1, "NAME [--json]"); err != nil {
				return err
			}
			name := c.Args().First()
			pv, err := ask(env, c, http.MethodGet, "/policies/"+pathSegment(name), nil, nil,
				func(v *snapshot.Vault) (policyView, error) { return showPolicy(c.Context, v, name) })
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(env.stdout, pv)
			}
			printPolicy(env, pv)
			return nil
		},
	}
}

func printPolicy(env *cmdEnv, pv policyView) {
	w, p := env.stdout, pv.Policy
	fmt.Fprintf(w, "policy:     %s (backs up into resource %s)\n", p.Name, p.Name)
	for _, s := range p.Sources {
		fmt.Fprintf(w, "source:     %s=%s\n", s.DiskName(), s.Path)
	}
	fmt.Fprintf(w, "schedule:   %s\n", pv.Schedule)
	fmt.Fprintf(w, "retention:  %s\n", p.Rules())
	if len(p.PreHook) > 0 {
		fmt.Fprintf(w, "pre-hook:   %s\n", quoteWords(p.PreHook))
	}
	if len(p.PostHook) > 0 {
		fmt.Fprintf(w, "post-hook:  %s\n", quoteWords(p.PostHook))
	}
	if len(p.PreHook)+len(p.PostHook) > 0 {
		fmt.Fprintf(w, "hooks:      timeout %s, on failure %s\n", p.HookTimeout, p.HookFailure)
	}
	if p.Paused {
		fmt.Fprintln(w, "paused:     yes")
	}
	st := pv.State
	if st.LastStart.IsZero() {
		fmt.Fprintln(w, "last run:   never")
	} else {
		fmt.Fprintf(w, "last run:   %s, %s", st.LastStart.In(env.location()).Format("2006-01-02 15:04:05"), st.LastResult)
		if st.LastError != "" {
			fmt.Fprintf(w, ": %s", st.LastError)
		}
		fmt.Fprintln(w)
	}
	if !st.LastSuccess.IsZero() {
		fmt.Fprintf(w, "last good:  %s, took %s, %s\n", st.LastSuccess.In(env.location()).Format("2006-01-02 15:04:05"),
			shortDuration(st.LastSuccessDuration), st.LastPoint)
	}
	fmt.Fprintf(w, "next run:   %s\n", formatNext(env, pv.Next))
}

func formatNext(env *cmdEnv, t *time.Time) string {
	if t == nil {
		return "none (paused)"
	}
	return t.In(env.location()).Format("2006-01-02 15:04 MST")
}

func newPolicyRmCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:        "rm",
		Usage:       "remove a policy (its points stay)",
		Description: "Examples:\n  cairn policy rm web01",
		ArgsUsage:   "NAME",
		Action: func(c *cli.Context) error {
			if err := args(c, 1, 1, "NAME"); err != nil {
				return err
			}
			name := c.Args().First()
			if _, err := ask(env, c, http.MethodDelete, "/policies/"+pathSegment(name), nil, nil,
				func(v *snapshot.Vault) (removedView, error) { return removePolicy(c.Context, v, name) }); err != nil {
				return err
			}
			fmt.Fprintf(env.stdout, "removed policy %s (its points stay)\n", name)
			return nil
		},
	}
}

// quoteWords writes argv back as splitWords reads it.
func quoteWords(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`") {
			out[i] = a
		} else {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}

// splitWords splits a command as a shell would into words (quotes and
// backslashes), without running one.
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord, quote := false, byte(0)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case quote == '"':
			switch {
			case c == '"':
				quote = 0
			case c == '\\' && i+1 < len(s) && strings.IndexByte(`"\$`+"`", s[i+1]) >= 0:
				i++
				cur.WriteByte(s[i])
			default:
				cur.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unclosed %c quote in %q", quote, s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	if len(words) == 0 {
		return nil, errors.New("empty command")
	}
	return words, nil
}
