package main

import (
	"context"
	"errors"
	"sync"
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
	jobs   policyJobs
	logf   func(string, ...any)

	mu      sync.Mutex
	running map[string]string // policy → its running job's ID
	stateMu sync.Mutex        // a run's end and a tick both update states
	bad     map[string]string // damaged policies, logged once
	kick    chan struct{}     // a policy changed: look again now
}

// policyJobs is what the scheduler needs of the daemon's jobs.
type policyJobs interface {
	// start runs fn as a job of kind "backup", its target the policy's
	// resource, its trigger "policy NAME"; done is closed when it ends.
	start(name string, fn func(ctx context.Context, rep runReport) (any, error)) (id string, done <-chan struct{})
	// skipped records a job that was not run, and why.
	skipped(name, reason string) (id string)
}

func newScheduler(st storage.Storage, runner *policyRunner, jobs policyJobs, logf func(string, ...any)) *scheduler {
	return &scheduler{st: st, runner: runner, jobs: jobs, logf: logf, running: map[string]string{},
		bad: map[string]string{}, kick: make(chan struct{}, 1)}
}

// errRunning says a policy's last run goes on.
var errRunning = errors.New("already running")

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
		s.stateMu.Lock()
		st, err := policy.LoadState(ctx, s.st, p.Name)
		if err != nil && !errors.Is(err, policy.ErrNotFound) {
			s.stateMu.Unlock()
			s.logf("policy %s: its state: %v", p.Name, err)
			continue
		}
		slot, due := p.Due(now, st)
		if !due {
			s.stateMu.Unlock()
			continue
		}
		st.LastSlot = slot // before the run: a slot runs at most once
		if err := policy.SaveState(ctx, s.st, p.Name, st); err != nil {
			s.stateMu.Unlock()
			s.logf("policy %s: record its run: %v", p.Name, err)
			continue
		}
		s.stateMu.Unlock()
		if _, err := s.launch(p); errors.Is(err, errRunning) {
			s.logf("policy %s: the run of %s is skipped: %v", p.Name, slot.Format(time.RFC3339), err)
		}
	}
	return next
}

// launch starts a run of p, unless one goes on: then it records a
// skipped job and returns errRunning.
func (s *scheduler) launch(p *policy.Policy) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.running[p.Name]; ok {
		return s.jobs.skipped(p.Name, "the policy's run "+id+" goes on"), errRunning
	}
	id, done := s.jobs.start(p.Name, func(ctx context.Context, rep runReport) (any, error) {
		start := s.runner.clock()
		s.recordStart(ctx, p.Name, start)
		res, err := s.runner.run(ctx, p, rep)
		s.recordEnd(context.WithoutCancel(ctx), p.Name, start, res, err)
		return res, err
	})
	s.running[p.Name] = id
	go func() {
		<-done
		s.mu.Lock()
		if s.running[p.Name] == id {
			delete(s.running, p.Name)
		}
		s.mu.Unlock()
	}()
	return id, nil
}

func (s *scheduler) recordStart(ctx context.Context, name string, start time.Time) {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if err := recordRunStart(ctx, s.st, name, start); err != nil {
		s.logf("policy %s: record its run: %v", name, err)
	}
}

func (s *scheduler) recordEnd(ctx context.Context, name string, start time.Time, res *runResult, runErr error) {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if err := recordRunEnd(ctx, s.st, name, start, s.runner.clock(), res, runErr); err != nil {
		s.logf("policy %s: record its run: %v", name, err)
	}
}

// recordRunStart notes in a policy's state that a run started.
func recordRunStart(ctx context.Context, st storage.Storage, name string, start time.Time) error {
	state, err := policy.LoadState(ctx, st, name)
	if err != nil && !errors.Is(err, policy.ErrNotFound) {
		return err
	}
	state.LastStart, state.LastEnd = start, time.Time{}
	return policy.SaveState(ctx, st, name, state)
}

// recordRunEnd notes in a policy's state how a run ended.
func recordRunEnd(ctx context.Context, st storage.Storage, name string, start, end time.Time, res *runResult, runErr error) error {
	state, err := policy.LoadState(ctx, st, name)
	if err != nil && !errors.Is(err, policy.ErrNotFound) {
		return err
	}
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
	return policy.SaveState(ctx, st, name, state)
}

// runNow starts a run of the policy by hand (cairn run): it leaves the
// schedule's slots alone.
func (s *scheduler) runNow(ctx context.Context, name string) (string, error) {
	p, err := policy.Load(ctx, s.st, name)
	if err != nil {
		return "", err
	}
	return s.launch(p)
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
