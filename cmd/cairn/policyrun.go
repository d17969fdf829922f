package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cairn-backup/cairn/snapshot"
	"github.com/cairn-backup/cairn/snapshot/policy"
)

// runReport is where a policy run reports: its job's progress and log.
type runReport interface {
	Progress(done, total int64)
	Logf(format string, args ...any)
	Log() io.Writer // hook output
}

// runResult is what a policy run did, as its job's result.
type runResult struct {
	Policy      string             `json:"policy"`
	Result      policy.Result      `json:"result"`
	Point       *pointView         `json:"point,omitempty"`
	Consistency string             `json:"consistency,omitempty"`
	Pruned      int                `json:"pruned"`
	GC          *snapshot.GCReport `json:"gc,omitempty"`
	Error       string             `json:"error,omitempty"`
}

// policyRunner runs policies: freeze hook, backup, thaw hook, retention,
// and gc when it would free enough.
type policyRunner struct {
	v       *snapshot.Vault
	env     *cmdEnv // opens sources; its getenv gives the hooks PATH, HOME, LANG
	clock   func() time.Time
	gcShare float64 // gc after a run when it would free more than this share of the vault
}

// defaultGCShare: a policy's run ends with a gc when one would free more
// than 5% of what the vault's packs take.
const defaultGCShare = 0.05

// run runs p once, with the given trigger ("policy NAME" for a scheduled
// run or cairn run). The returned error is the run's failure, said in
// one line; the result says how it ended either way.
func (r *policyRunner) run(ctx context.Context, p *policy.Policy, rep runReport) (*runResult, error) {
	res := &runResult{Policy: p.Name}
	he := policy.HookEnv{Policy: p.Name, Vault: r.v.Dir(), Disks: p.Sources,
		Path: r.env.getenv("PATH"), Home: r.env.getenv("HOME"), Lang: r.env.getenv("LANG")}
	consistency := snapshot.ConsistencyCrash
	var pt *snapshot.Point
	var runErr error

	// Freeze.
	if len(p.PreHook) > 0 {
		he.Hook = policy.Pre
		rep.Logf("pre-hook: %v", p.PreHook)
		err := policy.RunHook(ctx, p.PreHook, he.Map(), p.HookTimeout, rep.Log())
		switch {
		case err == nil:
			consistency = snapshot.ConsistencyApplication
		case p.HookFailure == policy.Continue && ctx.Err() == nil:
			rep.Logf("pre-hook failed (%v); backing up anyway, crash-consistent", err)
		default:
			runErr = fmt.Errorf("pre-hook failed: %w", err)
			res.Result = policy.Skipped
		}
	}
	// Back up.
	if runErr == nil {
		pt, runErr = r.backup(ctx, p, consistency, rep)
		switch {
		case runErr == nil:
			res.Result = policy.Success
		case ctx.Err() != nil:
			res.Result = policy.Canceled
		default:
			res.Result = policy.Failure
		}
	}
	if ctx.Err() != nil && res.Result != policy.Success {
		res.Result = policy.Canceled
	}
	// Thaw, whatever happened, even when canceled: with a context of its
	// own, bounded by the hook's timeout.
	if len(p.PostHook) > 0 {
		he.Hook, he.Result = policy.Post, res.Result
		if pt != nil {
			he.Point = pt.Name()
		}
		rep.Logf("post-hook: %v", p.PostHook)
		if err := policy.RunHook(context.WithoutCancel(ctx), p.PostHook, he.Map(), p.HookTimeout, rep.Log()); err != nil {
			if p.HookFailure == policy.Continue {
				rep.Logf("post-hook failed: %v", err)
			} else if runErr == nil {
				runErr, res.Result = fmt.Errorf("post-hook failed: %w (the point %s stays)", err, pt.Name()), policy.Failure
			}
		}
	}
	if pt != nil {
		pv := newPointView(pt)
		res.Point, res.Consistency = &pv, pt.Consistency
	}
	// Retention and gc after a successful backup only: a failed run
	// prunes nothing.
	if res.Result == policy.Success {
		pr, err := r.v.Prune([]string{p.Name}, p.Rules(), false)
		if err != nil {
			rep.Logf("retention: %v", err)
		} else {
			res.Pruned = pr.Removed
			if pr.Removed > 0 {
				rep.Logf("retention (%s): removed %d point(s)", pr.Rules, pr.Removed)
			}
		}
		if gc, err := r.gcIfWorth(ctx, rep); err != nil {
			rep.Logf("gc: %v", err)
		} else {
			res.GC = gc
		}
	}
	if runErr != nil {
		res.Error = oneLine(runErr)
	}
	return res, runErr
}

// backup opens the policy's sources and backs them up.
func (r *policyRunner) backup(ctx context.Context, p *policy.Policy, consistency string, rep runReport) (*snapshot.Point, error) {
	args := make([]string, len(p.Sources))
	for i, s := range p.Sources {
		args[i] = s.DiskName() + "=" + s.Path
	}
	srcs, err := r.env.openSources(args, "")
	if err != nil {
		return nil, err
	}
	defer closeSources(srcs)
	disks := make([]snapshot.DiskSource, len(srcs))
	for i, s := range srcs {
		disks[i] = s.DiskSource
	}
	pt, err := r.v.Backup(ctx, p.Name, disks, snapshot.BackupOptions{Progress: rep.Progress,
		Consistency: consistency, Trigger: "policy " + p.Name})
	if err != nil {
		return nil, err
	}
	rep.Logf("backed up %s: %s changed, %s added (%s)", pt.Name(), bytesIEC(pt.Changed()), bytesIEC(pt.Added), pt.Consistency)
	if c := pt.DiskChanges(); !c.None() {
		rep.Logf("note: %s has other disks than %s@%s: %s", pt.Name(), pt.Resource, pt.Parent, c)
	}
	return pt, nil
}

// gcIfWorth runs gc when it would free more than gcShare of the vault.
func (r *policyRunner) gcIfWorth(ctx context.Context, rep runReport) (*snapshot.GCReport, error) {
	free, _, err := r.v.Reclaimable(ctx)
	if errors.Is(err, snapshot.ErrGCRunning) {
		return nil, nil
	}
	if err != nil || float64(free) <= r.gcShare*float64(r.v.Used()) {
		return nil, err
	}
	gc, err := r.v.GC(ctx, snapshot.GCOptions{})
	if errors.Is(err, snapshot.ErrGCRunning) {
		return nil, nil
	}
	if err == nil {
		rep.Logf("gc: freed %s", bytesIEC(gc.BytesFreed))
	}
	return gc, err
}
