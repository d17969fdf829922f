package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock a test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testManager is a jobManager on a fake clock whose log lines the test
// reads.
type testManager struct {
	*jobManager
	clock *fakeClock
	mu    sync.Mutex
	lines []string
}

func newTestManager(t testing.TB) *testManager {
	t.Helper()
	tm := &testManager{clock: newFakeClock()}
	tm.jobManager = &jobManager{clock: tm.clock.now, logf: func(format string, args ...any) {
		tm.mu.Lock()
		tm.lines = append(tm.lines, fmt.Sprintf(format, args...))
		tm.mu.Unlock()
	}}
	t.Cleanup(func() {
		tm.shutdown(errors.New("test over"))
		tm.wait()
	})
	return tm
}

func (tm *testManager) daemonLog() []string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return slices.Clone(tm.lines)
}

// ended waits for j to end and returns its view.
func ended(t testing.TB, j *job) jobView {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := j.wait(ctx); err != nil {
		t.Fatalf("job %s did not end: %v", j.ID(), err)
	}
	return j.view(true)
}

func TestJobStates(t *testing.T) {
	tm := newTestManager(t)
	ctx := context.Background()
	type res struct {
		Point string `json:"point"`
	}
	cases := []struct {
		name     string
		fn       jobFunc
		state    jobState
		err      string
		code     int
		result   string
		logMatch string
	}{
		{"succeeded", func(_ context.Context, jc *jobContext) (any, error) {
			jc.setBytes("added", 3<<20)
			tm.clock.advance(1500 * time.Millisecond)
			return res{"web01@20261121T100000Z"}, nil
		}, jobSucceeded, "", 0, `{"point":"web01@20261121T100000Z"}`, "backup web01 succeeded in 1.5s, 3.0 MiB added"},
		{"failed", func(context.Context, *jobContext) (any, error) {
			return nil, errors.New("web01.img: no such file or device")
		}, jobFailed, "web01.img: no such file or device", 1, "", "backup web01 failed in 0s: web01.img: no such file or device"},
		{"bad request", func(context.Context, *jobContext) (any, error) {
			return nil, usagef("--name: invalid name")
		}, jobFailed, "--name: invalid name", 2, "", "failed in 0s: --name: invalid name"},
		{"result and error", func(context.Context, *jobContext) (any, error) {
			return res{"r"}, errors.New("verify found 1 problem(s)")
		}, jobFailed, "verify found 1 problem(s)", 1, `{"point":"r"}`, "failed"},
		{"panic", func(context.Context, *jobContext) (any, error) {
			panic("oops")
		}, jobFailed, "internal error: oops", 1, "", "failed in 0s: internal error: oops"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := tm.start(ctx, jobSpec{Kind: "backup", Target: "web01"}, c.fn)
			v := ended(t, j)
			if v.State != c.state || v.Error != c.err || v.ExitCode != c.code || string(v.Result) != c.result ||
				v.Trigger != triggerManual || v.End == nil {
				t.Errorf("%+v", v)
			}
			lines := tm.daemonLog()
			if last := lines[len(lines)-1]; !strings.Contains(last, "job "+v.ID+" ") || !strings.Contains(last, c.logMatch) {
				t.Errorf("log line %q, want one with %q", last, c.logMatch)
			}
		})
	}
	// One line per job end, no more.
	if n := len(tm.daemonLog()); n != len(cases)+1 { // + the panic's stack
		t.Errorf("%d log lines for %d jobs:\n%s", n, len(cases), strings.Join(tm.daemonLog(), "\n"))
	}
}

func TestJobCancel(t *testing.T) {
	tm := newTestManager(t)
	started := make(chan struct{})
	j := tm.start(context.Background(), jobSpec{Kind: "backup", Target: "big", Trigger: "policy nightly"},
		func(ctx context.Context, jc *jobContext) (any, error) {
			jc.progress(10, 100)
			close(started)
			<-ctx.Done()
			tm.clock.advance(300 * time.Millisecond)
			return nil, fmt.Errorf("backup: %w", ctx.Err())
		})
	<-started
	if v := j.view(false); v.State != jobRunning || v.Progress != (progressView{10, 100}) {
		t.Errorf("running job: %+v", v)
	}
	if _, err := tm.cancel("nope", errCanceledBy); !errors.Is(err, errNoJob) {
		t.Errorf("cancel of an unknown job: %v", err)
	}
	if _, err := tm.cancel(j.ID(), errCanceledBy); err != nil {
		t.Fatal(err)
	}
	v := ended(t, j)
	if v.State != jobCanceled || v.Error != "canceled by cairn cancel" || v.ExitCode != 130 || v.Seconds != 0.3 {
		t.Errorf("canceled job: %+v", v)
	}
	if _, err := tm.cancel(j.ID(), errCanceledBy); !errors.Is(err, errJobEnded) {
		t.Errorf("cancel of an ended job: %v", err)
	}
	want := "job " + j.ID() + " backup big (policy nightly) canceled in 300ms (by cairn cancel)"
	if l := tm.daemonLog(); len(l) != 1 || l[0] != want {
		t.Errorf("log %q, want %q", l, want)
	}

	// A job that finishes its work despite the cancel succeeded.
	release := make(chan struct{})
	j = tm.start(context.Background(), jobSpec{Kind: "gc"}, func(ctx context.Context, jc *jobContext) (any, error) {
		<-release
		return map[string]int{"freed": 1}, nil
	})
	tm.cancel(j.ID(), errCanceledBy)
	close(release)
	if v := ended(t, j); v.State != jobSucceeded || v.Error != "" {
		t.Errorf("job that finished anyway: %+v", v)
	}

	// The parent's end cancels the job too; shutdown cancels the running
	// ones and those started after it, whose work never runs.
	ctx, cancel := context.WithCancel(context.Background())
	j = tm.start(ctx, jobSpec{Kind: "verify"}, func(ctx context.Context, jc *jobContext) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	cancel()
	if v := ended(t, j); v.State != jobCanceled || v.Error != "canceled" {
		t.Errorf("job whose parent ended: %+v", v)
	}
	j = tm.start(context.Background(), jobSpec{Kind: "verify"}, func(ctx context.Context, jc *jobContext) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	tm.shutdown(errShuttingDown)
	ran := false
	late := tm.start(context.Background(), jobSpec{Kind: "gc"}, func(ctx context.Context, jc *jobContext) (any, error) {
		ran = true
		return nil, nil
	})
	tm.wait()
	if v := j.view(false); v.State != jobCanceled || v.Error != errShuttingDown.Error() {
		t.Errorf("running job at shutdown: %+v", v)
	}
	if v := late.view(false); ran || v.State != jobCanceled || v.Error != errShuttingDown.Error() {
		t.Errorf("job started after shutdown (ran %v): %+v", ran, v)
	}
}

func TestJobLogIsBounded(t *testing.T) {
	tm := newTestManager(t)
	tm.logLines = 5
	release := make(chan struct{})
	j := tm.start(context.Background(), jobSpec{Kind: "backup", Target: "r"}, func(ctx context.Context, jc *jobContext) (any, error) {
		for i := range 12 {
			jc.logf("line %d", i)
		}
		jc.logf("%s", strings.Repeat("x", 2*maxLogLine))
		<-release
		return nil, nil
	})
	// A follower reads from where it was; it may lose lines only when
	// it falls behind by more than the bound.
	var got []string
	seq := 0
	for {
		lines, next, changed := j.logSince(seq)
		got, seq = append(got, lines...), next
		if seq == 13 {
			break
		}
		<-changed
	}
	if len(got) < 5 || got[len(got)-2] != "line 11" {
		t.Errorf("follower read %q", got)
	}
	close(release)
	v := ended(t, j)
	if len(v.Log) != 5 || v.Log[0] != "line 8" || v.LogDropped != 8 || len(v.Log[4]) != maxLogLine+3 {
		t.Errorf("log %d lines from %q, %d dropped", len(v.Log), v.Log[0], v.LogDropped)
	}
	if lv := j.view(false); lv.Log != nil || lv.LogDropped != 0 {
		t.Errorf("a list's view carries the log: %+v", lv)
	}
}

func TestJobHistory(t *testing.T) {
	tm := newTestManager(t)
	var ids []string
	for i := range defaultJobsKept + 5 {
		j := tm.start(context.Background(), jobSpec{Kind: "delete", Target: fmt.Sprint(i)}, func(context.Context, *jobContext) (any, error) {
			return nil, nil
		})
		ended(t, j)
		ids = append(ids, j.ID())
		if i%3 == 0 {
			tm.clock.advance(time.Millisecond)
		}
	}
	// IDs are unique and sort in start order, even in one millisecond.
	if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) || len(ids[0]) != 9 {
		t.Errorf("IDs not unique, sorted, 9 characters: %q", ids)
	}
	if tm.get(ids[4]) != nil || tm.get(ids[5]) == nil {
		t.Errorf("the history keeps the last %d jobs", defaultJobsKept)
	}
	release := make(chan struct{})
	running := tm.start(context.Background(), jobSpec{Kind: "backup"}, func(context.Context, *jobContext) (any, error) {
		<-release
		return nil, nil
	})
	all, recent := tm.list(true), tm.list(false)
	if len(all) != defaultJobsKept+1 || all[0].ID() != ids[5] || all[len(all)-1] != running {
		t.Errorf("list(all): %d jobs", len(all))
	}
	if len(recent) != recentJobs+1 || recent[0].ID() != ids[len(ids)-recentJobs] || recent[recentJobs] != running {
		t.Errorf("list: %d jobs", len(recent))
	}
	close(release)
	ended(t, running)

	// A skipped run is remembered, with why, and logged.
	s := tm.skip(jobSpec{Kind: "backup", Target: "web01", Trigger: "policy nightly"}, "job 01 of policy nightly is still running")
	if v := s.view(false); v.State != jobSkipped || v.Seconds != 0 || tm.get(s.ID()) == nil {
		t.Errorf("skipped: %+v", v)
	}
	l := tm.daemonLog()
	if want := "backup web01 (policy nightly) skipped: job 01 of policy nightly is still running"; !strings.HasSuffix(l[len(l)-1], want) {
		t.Errorf("log %q, want it to end %q", l[len(l)-1], want)
	}
}

// TestJobView: what the API shows of a job, in JSON.
func TestJobView(t *testing.T) {
	tm := newTestManager(t)
	release := make(chan struct{})
	j := tm.start(context.Background(), jobSpec{Kind: "restore", Target: "web01@latest"}, func(ctx context.Context, jc *jobContext) (any, error) {
		jc.setTarget("web01@20261121T100000Z")
		jc.progress(1<<20, 4<<20)
		<-release
		return []string{"ok"}, nil
	})
	for j.view(false).Progress.Done == 0 {
		time.Sleep(time.Millisecond)
	}
	tm.clock.advance(2 * time.Second)
	b, _ := json.Marshal(j.view(false))
	want := `{"id":"` + j.ID() + `","kind":"restore","target":"web01@20261121T100000Z","trigger":"manual","state":"running",` +
		`"progress":{"done":1048576,"total":4194304},"start":"2026-11-21T10:00:00Z","duration_seconds":2}`
	if string(b) != want {
		t.Errorf("running job:\n%s\nwant\n%s", b, want)
	}
	close(release)
	v := ended(t, j)
	if string(v.Result) != `["ok"]` || v.End == nil || !v.End.Equal(tm.clock.now()) {
		t.Errorf("ended job: %+v", v)
	}
}
