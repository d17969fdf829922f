package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// A job is one piece of work the daemon runs: a backup, restore, export,
// verify, prune, gc, delete, pin, unpin or policy run. It has an ID, a kind, a target
// (a resource, a point, or none for the whole vault), a trigger (who
// started it), a state, progress, a bounded log, and at its end a result
// (the view its command prints with --json) or an error.
//
// The manager keeps every running job and the last finished ones in
// memory; nothing about jobs is stored in the vault. It is safe for
// concurrent use. The daemon's HTTP handlers start jobs for clients
// (trigger "manual"); a scheduler starts them the same way with its own
// trigger ("schedule") and records the runs it skips with skip.

type jobState string

const (
	jobRunning   jobState = "running"
	jobSucceeded jobState = "succeeded"
	jobFailed    jobState = "failed"
	jobCanceled  jobState = "canceled"
	jobSkipped   jobState = "skipped" // not run: a run of the same policy was going on
)

// triggerManual is the trigger of a job a client asked for.
const triggerManual = "manual"

// jobSpec says what a job is.
type jobSpec struct {
	Kind    string // backup, restore, export, verify, prune, gc, delete, pin, unpin, run (a policy)
	Target  string // a resource, a point, points; "" for the whole vault
	Trigger string // "manual", or "schedule" (a policy's run its schedule started); "" means manual
}

// jobFunc is a job's work. It stops soon after ctx ends, committing
// nothing, and reports through jc. It may return a result and an error
// both (verify's report of a damaged vault, a restore that skipped
// damaged ranges): the job then failed, and its result is kept.
type jobFunc func(ctx context.Context, jc *jobContext) (result any, err error)

// jobContext is what a job's work reports through. Its methods are safe
// for concurrent use; on a nil *jobContext they do nothing. Outside a
// daemon (a command opening the vault itself) it is built with
// onProgress alone.
type jobContext struct {
	job        *job                    // nil outside a daemon
	onProgress func(done, total int64) // also called, when set
	onLog      func(line string)       // also called, when set
}

// progress records how far the job is, in bytes (done of total).
func (jc *jobContext) progress(done, total int64) {
	if jc == nil {
		return
	}
	if jc.job != nil {
		jc.job.done.Store(done)
		jc.job.total.Store(total)
	}
	if jc.onProgress != nil {
		jc.onProgress(done, total)
	}
}

// logf adds a line to the job's log (for cairn job show, and the
// events of a client that follows the job).
func (jc *jobContext) logf(format string, args ...any) {
	if jc == nil {
		return
	}
	line := fmt.Sprintf(format, args...)
	if jc.job != nil {
		jc.job.addLog(line)
	}
	if jc.onLog != nil {
		jc.onLog(line)
	}
}

// id is the job's ID; "" outside a daemon.
func (jc *jobContext) id() string {
	if jc == nil || jc.job == nil {
		return ""
	}
	return jc.job.id
}

// setTarget names the job's target once it is known better, e.g. the
// point a reference such as web01@latest resolved to.
func (jc *jobContext) setTarget(target string) {
	if jc == nil || jc.job == nil {
		return
	}
	jc.job.mu.Lock()
	jc.job.target = target
	jc.job.mu.Unlock()
}

// setBytes records the job's bytes for the daemon's log and job lists:
// added (backup), written (restore, export), freed (gc), checked (verify).
func (jc *jobContext) setBytes(kind string, n int64) {
	if jc == nil || jc.job == nil {
		return
	}
	jc.job.mu.Lock()
	jc.job.bytesKind, jc.job.bytes = kind, n
	jc.job.mu.Unlock()
}

// Defaults of a jobManager.
const (
	defaultJobsKept = 100  // finished jobs remembered
	defaultLogLines = 1000 // lines of log kept per job
	maxLogLine      = 4096 // bytes of one log line kept
	recentJobs      = 10   // finished jobs listed without all
)

var (
	errNoJob    = errors.New("no such job")
	errJobEnded = errors.New("the job is not running")
)

// Why a job was cancelled: its error, and what a client following it
// prints.
var (
	errCanceledBy   = errors.New("canceled by cairn cancel")
	errClientGone   = errors.New("canceled by its client (Ctrl-C)")
	errShuttingDown = errors.New("canceled: the daemon is shutting down")
)

// errSkipped ends a job that found its work already being done (a run
// of a policy that runs now): its state is skipped, not failed.
var errSkipped = errors.New("skipped")

// jobManager runs jobs and remembers them.
type jobManager struct {
	// clock is the time jobs start and end at; time.Now when nil.
	clock func() time.Time
	// logf gets one line per job end (the daemon's log); nil: none.
	logf func(format string, args ...any)
	// keep is the number of finished jobs remembered; defaultJobsKept
	// when 0.
	keep int
	// logLines bounds each job's log; defaultLogLines when 0.
	logLines int
	// ended, when set, is told of each job's end (the metrics count
	// jobs by kind and state).
	ended func(kind string, state jobState)

	mu       sync.Mutex
	lastID   int64
	running  map[string]*job
	finished []*job // oldest first
	closed   error  // why no job starts any more (shutdown); nil: open
	wg       sync.WaitGroup
}

func (m *jobManager) now() time.Time {
	if m.clock != nil {
		return m.clock()
	}
	return time.Now()
}

// job is one job; read it through view. Its fields after mu are guarded
// by mu; done and total are atomic, since progress is reported often.
type job struct {
	m      *jobManager
	id     string
	kind   string
	tr     string // trigger
	start  time.Time
	cancel context.CancelCauseFunc
	ctx    context.Context
	ended  chan struct{} // closed when the job has ended

	done, total atomic.Int64

	mu        sync.Mutex
	target    string
	state     jobState
	end       time.Time
	result    any
	resultRaw json.RawMessage
	errMsg    string
	exitCode  int
	bytes     int64
	bytesKind string
	log       []string // the last logLines lines
	logSeq    int      // lines ever logged; log holds [logSeq-len(log), logSeq)
	changed   chan struct{}
}

// start runs fn as a new job in its own goroutine and returns at once.
// The job's context is a child of ctx: ending ctx cancels the job. After
// shutdown, the job is cancelled before fn runs.
func (m *jobManager) start(ctx context.Context, spec jobSpec, fn jobFunc) *job {
	j := m.newJob(spec, jobRunning)
	j.ctx, j.cancel = context.WithCancelCause(ctx)
	m.mu.Lock()
	if m.running == nil {
		m.running = map[string]*job{}
	}
	m.running[j.id] = j
	m.wg.Add(1)
	if m.closed != nil {
		j.cancel(m.closed)
		fn = func(ctx context.Context, _ *jobContext) (any, error) { return nil, ctx.Err() }
	}
	m.mu.Unlock()
	go func() {
		defer m.wg.Done()
		result, err := j.run(fn)
		m.finish(j, result, err)
	}()
	return j
}

// skip records a job that was not run (state skipped) with why, and
// logs its line.
func (m *jobManager) skip(spec jobSpec, why string) *job {
	j := m.newJob(spec, jobSkipped)
	j.end, j.errMsg = j.start, why
	close(j.ended)
	m.mu.Lock()
	m.remember(j)
	m.mu.Unlock()
	m.logEnd(j)
	return j
}

func (m *jobManager) newJob(spec jobSpec, state jobState) *job {
	trigger := spec.Trigger
	if trigger == "" {
		trigger = triggerManual
	}
	now := m.now()
	m.mu.Lock()
	id := m.nextID(now)
	m.mu.Unlock()
	return &job{m: m, id: id, kind: spec.Kind, tr: trigger, target: spec.Target, start: now, state: state,
		ended: make(chan struct{}), changed: make(chan struct{})}
}

// nextID returns a short ID that sorts in start order: the start time
// in milliseconds, in 9 digits of base 32, made larger than the last ID
// when two jobs start in the same millisecond (or a clock goes back).
func (m *jobManager) nextID(now time.Time) string {
	n := max(now.UnixMilli(), m.lastID+1)
	m.lastID = n
	const digits = "0123456789abcdefghjkmnpqrstvwxyz" // Crockford's: no i, l, o, u
	b := make([]byte, 9)
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = digits[n&31]
		n >>= 5
	}
	return string(b)
}

// run calls fn, turning a panic into the job's error.
func (j *job) run(fn jobFunc) (result any, err error) {
	defer func() {
		if p := recover(); p != nil {
			if j.m.logf != nil {
				j.m.logf("job %s panicked: %v\n%s", j.id, p, debug.Stack())
			}
			result, err = nil, fmt.Errorf("internal error: %v", p)
		}
	}()
	return fn(j.ctx, &jobContext{job: j})
}

func (m *jobManager) finish(j *job, result any, err error) {
	raw, merr := json.Marshal(result)
	if merr != nil {
		raw, _ = json.Marshal(map[string]string{"unencodable": merr.Error()})
	}
	canceled := err != nil && j.ctx.Err() != nil
	j.cancel(nil)
	j.mu.Lock()
	j.end = m.now()
	j.result = result
	if string(raw) != "null" {
		j.resultRaw = raw
	}
	switch {
	case canceled:
		j.state, j.errMsg, j.exitCode = jobCanceled, "canceled", 130
		if c := context.Cause(j.ctx); c != nil && c != context.Canceled {
			j.errMsg = oneLine(c)
		}
	case errors.Is(err, errSkipped):
		j.state = jobSkipped
		j.exitCode, j.errMsg = exitCode(err)
	case err != nil:
		j.state = jobFailed
		j.exitCode, j.errMsg = exitCode(err)
	default:
		j.state = jobSucceeded
	}
	j.mu.Unlock()
	m.mu.Lock()
	delete(m.running, j.id)
	m.remember(j)
	m.mu.Unlock()
	m.logEnd(j)
	j.mu.Lock()
	close(j.ended)
	j.notify()
	j.mu.Unlock()
}

// remember adds a finished job to the history, dropping the oldest
// beyond keep. m.mu is held.
func (m *jobManager) remember(j *job) {
	keep := m.keep
	if keep <= 0 {
		keep = defaultJobsKept
	}
	m.finished = append(m.finished, j)
	if n := len(m.finished) - keep; n > 0 {
		m.finished = slices.Delete(m.finished, 0, n)
	}
}

// logEnd writes the job's one line in the daemon's log: ID, kind, target,
// trigger when not manual, result, duration and bytes.
func (m *jobManager) logEnd(j *job) {
	v := j.view(false)
	if m.ended != nil {
		m.ended(v.Kind, v.State)
	}
	if m.logf == nil {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "job %s %s", v.ID, v.Kind)
	if v.Target != "" {
		fmt.Fprintf(&b, " %s", v.Target)
	}
	if v.Trigger != triggerManual {
		fmt.Fprintf(&b, " (%s)", v.Trigger)
	}
	if v.State == jobSkipped {
		fmt.Fprintf(&b, " skipped: %s", v.Error)
		m.logf("%s", b.String())
		return
	}
	fmt.Fprintf(&b, " %s in %s", v.State, shortDuration(secondsDuration(v.Seconds)))
	if v.BytesKind != "" {
		fmt.Fprintf(&b, ", %s %s", bytesIEC(v.Bytes), v.BytesKind)
	}
	switch why := strings.TrimPrefix(strings.TrimPrefix(v.Error, "canceled"), ":"); {
	case v.State == jobCanceled && why != v.Error:
		fmt.Fprintf(&b, " (%s)", strings.TrimSpace(why))
	case v.Error != "":
		fmt.Fprintf(&b, ": %s", v.Error)
	}
	m.logf("%s", b.String())
}

// addLog appends a line to the job's log, keeping the last logLines.
func (j *job) addLog(line string) {
	limit := j.m.logLines
	if limit <= 0 {
		limit = defaultLogLines
	}
	line = strings.TrimRight(line, "\n")
	if len(line) > maxLogLine {
		line = line[:maxLogLine] + "..."
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.log = append(j.log, line)
	if n := len(j.log) - limit; n > 0 {
		j.log = slices.Delete(j.log, 0, n)
	}
	j.logSeq++
	j.notify()
}

// notify wakes whoever waits for a change of the job. j.mu is held.
func (j *job) notify() {
	close(j.changed)
	j.changed = make(chan struct{})
}

// get returns the job with ID id, running or remembered, or nil.
func (m *jobManager) get(id string) *job {
	m.mu.Lock()
	defer m.mu.Unlock()
	if j := m.running[id]; j != nil {
		return j
	}
	for _, j := range m.finished {
		if j.id == id {
			return j
		}
	}
	return nil
}

// list returns the running jobs and the last recentJobs finished ones,
// or every finished job remembered with all, in start order.
func (m *jobManager) list(all bool) []*job {
	m.mu.Lock()
	defer m.mu.Unlock()
	fin := m.finished
	if !all && len(fin) > recentJobs {
		fin = fin[len(fin)-recentJobs:]
	}
	out := slices.Clone(fin)
	for _, j := range m.running {
		out = append(out, j)
	}
	slices.SortFunc(out, func(a, b *job) int { return strings.Compare(a.id, b.id) })
	return out
}

// cancel asks the job with ID id to stop, for why (which becomes its
// error). It returns at once; wait for the job to see it end.
func (m *jobManager) cancel(id string, why error) (*job, error) {
	j := m.get(id)
	if j == nil {
		return nil, fmt.Errorf("%w: %s", errNoJob, id)
	}
	select {
	case <-j.ended:
		return j, fmt.Errorf("%w: job %s %s", errJobEnded, id, j.view(false).State)
	default:
	}
	j.cancel(why)
	return j, nil
}

// shutdown asks every running job to stop, for why, and cancels every
// job started from now on; wait then returns once they have ended.
func (m *jobManager) shutdown(why error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = why
	for _, j := range m.running {
		j.cancel(why)
	}
}

// wait returns once every job started has ended. Call it after shutdown
// (or when nothing starts jobs any more).
func (m *jobManager) wait() { m.wg.Wait() }

// wait returns once the job has ended, or ctx's error if ctx ends first.
func (j *job) wait(ctx context.Context) error {
	select {
	case <-j.ended:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ID returns the job's ID.
func (j *job) ID() string { return j.id }

// Done is closed when the job has ended.
func (j *job) Done() <-chan struct{} { return j.ended }

// jobView is a job as the API and cairn jobs --json show it.
type jobView struct {
	ID       string       `json:"id"`
	Kind     string       `json:"kind"`
	Target   string       `json:"target,omitempty"`
	Trigger  string       `json:"trigger"`
	State    jobState     `json:"state"`
	Progress progressView `json:"progress"`
	Start    time.Time    `json:"start"`
	End      *time.Time   `json:"end,omitempty"`
	// Seconds is the job's duration so far, or in all once ended.
	Seconds   float64         `json:"duration_seconds"`
	Bytes     int64           `json:"bytes,omitempty"`      // see BytesKind
	BytesKind string          `json:"bytes_kind,omitempty"` // added, written, freed, checked
	Result    json.RawMessage `json:"result,omitempty"`     // the --json view of the job's command
	Error     string          `json:"error,omitempty"`
	ExitCode  int             `json:"exit_code,omitempty"` // of the command that ran it: 1, 2, 130
	// Log and LogDropped only in a single job's view: its last lines, and
	// how many earlier ones were dropped.
	Log        []string `json:"log,omitempty"`
	LogDropped int      `json:"log_dropped,omitempty"`
}

type progressView struct {
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
}

// view returns the job as it is now, with its log when withLog.
func (j *job) view(withLog bool) jobView {
	j.mu.Lock()
	defer j.mu.Unlock()
	v := jobView{ID: j.id, Kind: j.kind, Target: j.target, Trigger: j.tr, State: j.state,
		Progress: progressView{j.done.Load(), j.total.Load()}, Start: j.start.UTC(),
		Bytes: j.bytes, BytesKind: j.bytesKind, Result: j.resultRaw, Error: j.errMsg, ExitCode: j.exitCode}
	end := j.end
	if j.state == jobRunning {
		end = j.m.now()
	} else {
		e := j.end.UTC()
		v.End = &e
	}
	v.Seconds = seconds(end.Sub(j.start))
	if withLog {
		v.Log = slices.Clone(j.log)
		v.LogDropped = j.logSeq - len(j.log)
	}
	return v
}

// Result returns what the job's work returned, once it has ended.
func (j *job) Result() any {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.result
}

// logSince returns the lines logged after the first seq, the sequence
// number to ask with next, and a channel closed at the next change.
func (j *job) logSince(seq int) ([]string, int, <-chan struct{}) {
	j.mu.Lock()
	defer j.mu.Unlock()
	first := j.logSeq - len(j.log)
	seq = max(seq, first)
	return slices.Clone(j.log[seq-first:]), j.logSeq, j.changed
}

// secondsDuration is the duration of s seconds, as --json prints them.
func secondsDuration(s float64) time.Duration {
	return time.Duration(math.Round(s * float64(time.Second)))
}
