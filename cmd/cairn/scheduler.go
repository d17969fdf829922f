package main

import (
	"context"
	"time"

	"github.com/cairn-backup/cairn/chunkstore/storage"
	"github.com/cairn-backup/cairn/snapshot/policy"
)

// scheduler runs each policy of the vault on its schedule. It keeps no
// clock of its own: tick is given the time (the daemon's loop calls it
// when the next slot comes, tests call it with a fake clock).
//
// Invariants:
//   - A slot runs at most once: its state records it before the run
//     starts (policy.State.LastSlot), and however many slots passed while
//     the daemon was down, one run is due, for the latest (policy.Due).
//   - Two runs of one policy never overlap: a slot that comes while the
//     last run goes on is recorded as a skipped job.
type scheduler struct {
	st     storage.Storage
	runner *policyRunner
	runs   *policyRuns
	jobs   policyJobs
	logf   func(string, ...any)

	bad  map[string]string // damaged policies, logged once
	kick chan struct{}     // a policy changed: look again now
}

// policyJobs is what the scheduler needs of the daemon's jobs.
type policyJobs interface {
	// start runs fn as a job of kind "run", its target the policy, its
	// trigger "schedule"; done is closed when it ends.
	start(name string, fn func(ctx context.Context, rep runReport, jobID string) (any, error)) (id string, done <-chan struct{})
	// skipped records a run that was not started, and why.
	skipped(name, reason string) (id string)
}

// triggerSchedule is the trigger of a policy's job started by its schedule.
const triggerSchedule = "schedule"

// managerJobs starts the scheduler's jobs in the daemon's job manager.
type managerJobs struct {
	ctx context.Context // the daemon's: its end cancels the runs
	m   *jobManager
}

func (a managerJobs) start(name string, fn func(ctx context.Context, rep runReport, jobID string) (any, error)) (string, <-chan struct{}) {
	j := a.m.start(a.ctx, jobSpec{Kind: "run", Target: name, Trigger: triggerSchedule}, func(ctx context.Context, jc *jobContext) (any, error) {
		return fn(ctx, jobReport{jc}, jc.id())
	})
	return j.id, j.ended
}

func (a managerJobs) skipped(name, reason string) string {
	return a.m.skip(jobSpec{Kind: "run", Target: name, Trigger: triggerSchedule}, reason).id
}

func newScheduler(st storage.Storage, runner *policyRunner, jobs policyJobs, logf func(string, ...any)) *scheduler {
	return &scheduler{st: st, runner: runner, runs: runsOf(runner.v), jobs: jobs, logf: logf,
		bad: map[string]string{}, kick: make(chan struct{}, 1)}
}

// tick starts the runs due at now and returns when to look again: the
// next slot of any policy, and at least every minute (policies change).
func (s *scheduler) tick(ctx context.Context, now time.Time) time.Time {
	next := now.Add(time.Minute)
	ps, bad, err := policy.List(ctx, s.st)
	if err != nil {
		s.logf("policies: %v", err)
		return next
	}
	for _, b := range bad {
		if s.bad[b.Name] != b.Err.Error() {
			s.bad[b.Name] = b.Err.Error()
			s.logf("policy %s cannot be read and does not run: %v", b.Name, b.Err)
		}
	}
	for _, p := range ps {
		if n := p.Schedule.Next(now); !p.Paused && !n.IsZero() && n.Before(next) {
			next = n
		}
		var slot time.Time
		due := false
		err := s.runs.updateState(ctx, s.st, p.Name, func(st *policy.State) bool {
			if slot, due = p.Due(now, *st); due {
				st.LastSlot = slot // before the run: a slot runs at most once
			}
			return due
		})
		if err != nil {
			s.logf("policy %s: its state: %v", p.Name, err)
			continue
		}
		if due {
			s.launch(p, slot)
		}
	}
	return next
}

// launch starts the run of p for slot, unless a run of it goes on: then
// it records the slot's run as skipped.
func (s *scheduler) launch(p *policy.Policy, slot time.Time) {
	if id, ok := s.runs.runningJob(p.Name); ok {
		why := "a run of it goes on"
		if id != "" {
			why += " (job " + id + ")"
		}
		s.jobs.skipped(p.Name, "the run of "+slot.Format(time.RFC3339)+": "+why)
		return
	}
	s.jobs.start(p.Name, func(ctx context.Context, rep runReport, jobID string) (any, error) {
		return s.runner.runRecorded(ctx, p, rep, jobID)
	})
}

// changed makes the loop look at the policies again at once.
func (s *scheduler) changed() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// loop runs the scheduler until ctx ends, waking at each next slot.
func (s *scheduler) loop(ctx context.Context) {
	for {
		now := s.runner.clock()
		next := s.tick(ctx, now)
		t := time.NewTimer(max(time.Second, next.Sub(now)))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.kick:
		case <-t.C:
		}
		t.Stop()
	}
}
