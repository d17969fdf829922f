package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/chunkstore/storage"
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
	getenv  func(string) string // gives the hooks PATH, HOME, LANG
	clock   func() time.Time
	gcShare float64 // gc after a run when it would free more than this share of the vault
}

func newPolicyRunner(v *snapshot.Vault, clock func() time.Time) *policyRunner {
	return &policyRunner{v: v, getenv: os.Getenv, clock: clock, gcShare: defaultGCShare}
}

// policyRuns knows which policies of a vault run now, so that two runs of
// one policy never overlap, whoever starts them (the schedule, cairn run),
// and serialises the read-modify-writes of their states.
type policyRuns struct {
	mu      sync.Mutex
	running map[string]string // policy → the job that runs it ("" outside a daemon)
	stateMu sync.Mutex
}

var vaultRuns sync.Map // *snapshot.Vault → *policyRuns

func runsOf(v *snapshot.Vault) *policyRuns {
	r, _ := vaultRuns.LoadOrStore(v, &policyRuns{running: map[string]string{}})
	return r.(*policyRuns)
}

// claim marks the policy as run by job id; when it runs already, it
// returns false and the job that runs it.
func (r *policyRuns) claim(name, id string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if other, ok := r.running[name]; ok {
		return other, false
	}
	r.running[name] = id
	return "", true
}

func (r *policyRuns) release(name string) {
	r.mu.Lock()
	delete(r.running, name)
	r.mu.Unlock()
}

// runningJob says whether the policy runs now, and in which job.
func (r *policyRuns) runningJob(name string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id, ok := r.running[name]
	return id, ok
}

// updateState changes a policy's state under the lock, and saves it
// when change says it changed.
func (r *policyRuns) updateState(ctx context.Context, st storage.Storage, name string, change func(*policy.State) bool) error {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	state, err := policy.LoadState(ctx, st, name)
	if err != nil && !errors.Is(err, policy.ErrNotFound) {
		return err
	}
	if !change(&state) {
		return nil
	}
	return policy.SaveState(ctx, st, name, state)
}

// runRecorded runs p once as job jobID, unless it runs already (then it
// returns an error wrapping errSkipped), and records the run's start and
// end in the policy's state.
func (r *policyRunner) runRecorded(ctx context.Context, p *policy.Policy, rep runReport, jobID string) (*runResult, error) {
	runs := runsOf(r.v)
	if other, ok := runs.claim(p.Name, jobID); !ok {
		why := "a run of it goes on"
		if other != "" {
			why += " (job " + other + ")"
		}
		return &runResult{Policy: p.Name, Result: policy.Skipped, Error: why}, fmt.Errorf("policy %s: %w: %s", p.Name, errSkipped, why)
	}
	defer runs.release(p.Name)
	st, start := r.v.Store().Storage(), r.clock()
	record := func(ctx context.Context, change func(*policy.State)) {
		err := runs.updateState(ctx, st, p.Name, func(s *policy.State) bool { change(s); return true })
		if err != nil {
			rep.Logf("policy %s: record its run: %v", p.Name, err)
		}
	}
	record(ctx, func(s *policy.State) { s.LastStart, s.LastEnd = start, time.Time{} })
	res, runErr := r.run(ctx, p, rep)
	record(context.WithoutCancel(ctx), func(s *policy.State) { noteRunEnd(s, start, r.clock(), res, runErr) })
	return res, runErr
}

// noteRunEnd writes how a run ended into a policy's state.
func noteRunEnd(state *policy.State, start, end time.Time, res *runResult, runErr error) {
	state.LastEnd = end
	state.LastResult, state.LastError = policy.Failure, ""
	if res != nil {
		state.LastResult = res.Result
		if res.Point != nil {
			state.LastPoint = res.Point.Point
		}
	}
	if runErr != nil {
		state.LastError = oneLine(runErr)
	}
	if state.LastResult == policy.Success {
		state.LastSuccess, state.LastSuccessDuration = end, end.Sub(start)
	}
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
		Path: r.getenv("PATH"), Home: r.getenv("HOME"), Lang: r.getenv("LANG")}
	consistency := snapshot.ConsistencyCrash
	var pt *snapshot.Point
	var runErr error

	// Freeze.
	if len(p.PreHook) > 0 {
		he.Hook = policy.Pre
		rep.Logf("pre-hook: %v", p.PreHook)
		err := runHook(ctx, p.PreHook, he, p.HookTimeout, rep)
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
		if err := runHook(context.WithoutCancel(ctx), p.PostHook, he, p.HookTimeout, rep); err != nil {
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
	disks := make([]backupDisk, len(p.Sources))
	for i, s := range p.Sources {
		disks[i] = backupDisk{Name: s.DiskName(), Path: s.Path}
	}
	srcs, err := openSources(ctx, disks, "")
	if err != nil {
		return nil, err
	}
	defer closeSources(srcs)
	sources := make([]snapshot.DiskSource, len(srcs))
	for i, s := range srcs {
		sources[i] = s.DiskSource
	}
	pt, err := r.v.Backup(ctx, p.Name, sources, snapshot.BackupOptions{Progress: rep.Progress,
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

// runHook runs a hook with its output in the run's log.
func runHook(ctx context.Context, argv []string, he policy.HookEnv, timeout time.Duration, rep runReport) error {
	out := rep.Log()
	err := policy.RunHook(ctx, argv, he.Map(), timeout, out)
	if f, ok := out.(interface{ Flush() }); ok {
		f.Flush()
	}
	return err
}

// runRequest is a run job's params: run this policy now (cairn run).
type runRequest struct {
	Policy string `json:"policy"`
}

func (r runRequest) target() string { return r.Policy }

func (r *runRequest) check() error {
	if err := snapshot.CheckName("resource", r.Policy); err != nil {
		return usagef("policy name: %v", err)
	}
	return nil
}

// runPolicyJob runs a policy now, as its schedule would, but leaves the
// schedule's slots alone.
func runPolicyJob(ctx context.Context, v *snapshot.Vault, r runRequest, jc *jobContext) (*runResult, error) {
	p, err := policy.Load(ctx, v.Store().Storage(), r.Policy)
	if err != nil {
		return nil, err
	}
	return newPolicyRunner(v, time.Now).runRecorded(ctx, p, jobReport{jc}, jc.id())
}

// jobReport is a run's report into its job: progress, log lines, and
// hook output cut into lines.
type jobReport struct{ jc *jobContext }

func (r jobReport) Progress(done, total int64)      { r.jc.progress(done, total) }
func (r jobReport) Logf(format string, args ...any) { r.jc.logf(format, args...) }
func (r jobReport) Log() io.Writer                  { return &lineWriter{emit: func(l string) { r.jc.logf("%s", l) }} }

// lineWriter hands out what is written to it one line at a time (a
// hook's output), keeping a partial last line until it ends; lines
// longer than 4 KiB are cut.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	emit func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) > maxLogLine {
				w.emit(string(w.buf))
				w.buf = w.buf[:0]
			}
			return len(p), nil
		}
		w.emit(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}

// Flush hands out a last line that did not end.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(string(w.buf))
		w.buf = w.buf[:0]
	}
}
