package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"
)

// The daemon's side of the API (api.go holds what the client shares):
// the router, the checks every request passes (the peer's uid, the vault
// it names), and the handlers. API.md documents every endpoint.

// routes returns the daemon's router. Reads answer the views their
// commands print with --json; work runs as jobs.
//
// The lead adds here the policy endpoints (GET /v1/policies, ...) and,
// on a separate --listen handler, /metrics.
func (d *daemon) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/version", d.api(d.getVersion))
	mux.HandleFunc("GET /v1/status", d.api(d.getStatus))
	mux.HandleFunc("GET /v1/points", d.api(d.getPoints))
	mux.HandleFunc("GET /v1/points/{point}", d.api(d.getPoint))
	mux.HandleFunc("GET /v1/stats", d.api(d.getStats))
	mux.HandleFunc("GET /v1/vault", d.api(d.getVault))
	mux.HandleFunc("PUT /v1/vault", d.api(d.putVault))
	mux.HandleFunc("GET /v1/ls", d.api(d.getLs))
	mux.HandleFunc("GET /v1/cat", d.getCat)
	mux.HandleFunc("POST /v1/export", d.postExport)
	mux.HandleFunc("POST /v1/jobs", d.postJob)
	mux.HandleFunc("GET /v1/jobs", d.api(d.getJobs))
	mux.HandleFunc("GET /v1/jobs/{id}", d.api(d.getJob))
	mux.HandleFunc("POST /v1/jobs/{id}/cancel", d.api(d.postCancel))
	return mux
}

// ServeHTTP checks who asks and for which vault, then routes. Only root
// and the daemon's own uid are served, whatever the socket's mode; a
// request naming a vault that is not the daemon's is refused.
func (d *daemon) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := d.checkPeer(r.Context()); err != nil {
		d.log.Printf("refused %s %s: %v", r.Method, r.URL.Path, err)
		writeError(w, err)
		return
	}
	if vault := r.Header.Get(headerVault); vault != "" {
		if err := d.checkVault(vault); err != nil {
			d.log.Printf("refused %s %s for a client: %v", r.Method, r.URL.Path, err)
			writeError(w, err)
			return
		}
	}
	if _, pattern := d.mux.Handler(r); pattern == "" {
		writeError(w, d.noRoute(r))
		return
	}
	d.mux.ServeHTTP(w, r)
}

// noRoute says why r has no handler: no such path, or not that method.
func (d *daemon) noRoute(r *http.Request) error {
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut} {
		rr := r.Clone(r.Context())
		rr.Method = m
		if _, pattern := d.mux.Handler(rr); pattern != "" {
			return fmt.Errorf("%w: %s %s (try %s)", errNotAllowed, r.Method, r.URL.Path, m)
		}
	}
	return fmt.Errorf("%w: %s %s (see API.md)", errNoEndpoint, r.Method, r.URL.Path)
}

// peerKey is the context key of a connection's peer credentials.
type peerKey struct{}

// withPeer notes the credentials of the process at the other end of a
// unix socket connection (SO_PEERCRED), for checkPeer.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *syscall.Ucred
	raw.Control(func(fd uintptr) {
		cred, err = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	if err != nil || cred == nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, cred)
}

// checkPeer admits root and the daemon's own uid.
func (d *daemon) checkPeer(ctx context.Context) error {
	cred, _ := ctx.Value(peerKey{}).(*syscall.Ucred)
	switch {
	case cred == nil:
		return fmt.Errorf("%w: the peer's credentials are unknown", errForbidden)
	case cred.Uid == 0 || int(cred.Uid) == d.uid:
		return nil
	}
	return fmt.Errorf("%w: uid %d may not use this daemon (root and uid %d may)", errForbidden, cred.Uid, d.uid)
}

// checkVault refuses a request that names a vault other than the
// daemon's. A client finds the daemon through CAIRN_SOCKET whatever
// vault its command names; running the command on the daemon's vault
// instead would back up into, or delete from, the wrong one. Comparing
// the directories' identities lets symlinks and other paths agree.
func (d *daemon) checkVault(vault string) error {
	if fi, err := os.Stat(vault); err == nil && os.SameFile(fi, d.dirFI) {
		return nil
	}
	return fmt.Errorf("%w: this command names vault %s, but the daemon at %s serves %s: "+
		"unset CAIRN_SOCKET to use %s, or name %s (or no vault) to use the daemon's",
		errWrongVault, vault, d.sock, d.dir, vault, d.dir)
}

// api adapts a handler that returns a view (answered as JSON, 200) or an
// error (answered as an apiError with its status).
func (d *daemon) api(h func(r *http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := h(r)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSONStatus(w, http.StatusOK, v)
	}
}

func writeJSONStatus(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	writeJSON(w, v)
}

// writeError answers err as an apiError: its one line and the exit code
// of the command that would have printed it.
func writeError(w http.ResponseWriter, err error) {
	code, msg := exitCode(err)
	status := httpStatus(err)
	if code == 130 {
		status = http.StatusServiceUnavailable // cut short: the daemon is going down
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(apiError{Error: msg, ExitCode: code})
	w.Write(append(b, '\n'))
}

// maxBody bounds a request's body.
const maxBody = 1 << 20

// readBody decodes a request's JSON body strictly; an empty body is {}.
func readBody(r *http.Request, v any) error {
	// Reading the body to its end also lets the server notice when the
	// client hangs up, which cancels the request's context.
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	switch {
	case err != nil:
		return usagef("request body: %v", err)
	case len(b) > maxBody:
		return usagef("request body: more than %d bytes", maxBody)
	}
	if err := decodeStrict(b, v); err != nil {
		return usagef("request body: %v", err)
	}
	return nil
}

func (d *daemon) getVersion(*http.Request) (any, error) {
	return map[string]string{"version": versionString(), "api": "v1"}, nil
}

// statusView is GET /v1/status.
type statusView struct {
	PID      int          `json:"pid"`
	Version  string       `json:"version"`
	API      string       `json:"api"`
	Vault    string       `json:"vault"`
	Socket   string       `json:"socket"`
	Mount    string       `json:"mount,omitempty"`
	Started  time.Time    `json:"started"`
	Uptime   float64      `json:"uptime_seconds"`
	Capacity capacityView `json:"capacity"`
	Jobs     []jobView    `json:"jobs"` // the running ones
	// POLICIES: the lead adds the policies here, each with its
	// schedule, its last job and its next run.
}

type capacityView struct {
	Used  int64 `json:"used"`
	Total int64 `json:"total,omitempty"` // absent: no capacity set
}

func (d *daemon) getStatus(*http.Request) (any, error) {
	s := statusView{PID: os.Getpid(), Version: versionString(), API: "v1", Vault: d.dir, Socket: d.sock, Mount: d.mpoint,
		Started: d.started.UTC(), Uptime: seconds(d.jobs.now().Sub(d.started)),
		Capacity: capacityView{Used: d.vault.Used(), Total: d.vault.Config().Capacity}, Jobs: []jobView{}}
	for _, j := range d.jobs.list(false) {
		if v := j.view(false); v.State == jobRunning {
			s.Jobs = append(s.Jobs, v)
		}
	}
	return s, nil
}

func (d *daemon) getPoints(r *http.Request) (any, error) {
	return listPoints(d.vault, r.URL.Query().Get("resource"))
}

func (d *daemon) getPoint(r *http.Request) (any, error) {
	return showPoint(d.vault, r.PathValue("point"))
}

func (d *daemon) getStats(r *http.Request) (any, error) {
	return vaultStats(r.Context(), d.vault)
}

func (d *daemon) getVault(*http.Request) (any, error) {
	return newVaultView(d.vault), nil
}

func (d *daemon) putVault(r *http.Request) (any, error) {
	var s vaultSettings
	if err := readBody(r, &s); err != nil {
		return nil, err
	}
	vv, err := setVault(r.Context(), d.vault, s)
	if err == nil {
		d.log.Printf("vault capacity set to %s for a client", capacityLine(vv.Used, vv.Capacity))
	}
	return vv, err
}

func (d *daemon) getLs(r *http.Request) (any, error) {
	ref := r.URL.Query().Get("ref")
	if ref == "" {
		return nil, usagef("ref=POINT[:PATH] is required")
	}
	return listGuest(d.vault, ref)
}

func (d *daemon) getCat(w http.ResponseWriter, r *http.Request) {
	ref := r.URL.Query().Get("ref")
	if ref == "" {
		writeError(w, usagef("ref=POINT:PATH is required"))
		return
	}
	sw := &streamWriter{w: w}
	sw.end(nil, runCat(r.Context(), d.vault, ref, sw))
}

// postExport runs an export job whose output is the answer: the image,
// as it is written, then trailerResult (the --json view) or trailerError.
func (d *daemon) postExport(w http.ResponseWriter, r *http.Request) {
	var req exportRequest
	if err := readBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.Output == "" {
		req.Output = "-"
	}
	if req.Output != "-" {
		writeError(w, usagef("POST %s/export streams the image: give output \"-\" or none (POST %s/jobs with kind export writes a file)", apiPrefix, apiPrefix))
		return
	}
	if err := req.check(); err != nil {
		writeError(w, err)
		return
	}
	sw := &streamWriter{w: w}
	j := d.jobs.start(d.ctx, jobSpec{Kind: "export", Target: req.Point, Trigger: triggerManual}, func(ctx context.Context, jc *jobContext) (any, error) {
		sw.job = jc.job.id
		return runExport(ctx, d.vault, req, jc, sw)
	})
	// The job writes the answer: it must be over before the handler is.
	select {
	case <-j.Done():
	case <-r.Context().Done():
		d.jobs.cancel(j.id, errClientGone)
		<-j.Done()
	}
	v := j.view(false)
	var err error
	if v.State != jobSucceeded {
		err = &remoteError{msg: v.Error, code: v.ExitCode}
	}
	sw.end(v.Result, err)
}

// streamWriter is the answer of a stream: its status and headers go out
// with the first byte, so that a failure before it is a plain error
// answer; one after it is trailerError.
type streamWriter struct {
	w       http.ResponseWriter
	job     string // the job writing it, for headerJob
	started bool
}

func (s *streamWriter) Write(p []byte) (int, error) {
	if !s.started {
		s.begin()
	}
	return s.w.Write(p)
}

func (s *streamWriter) begin() {
	h := s.w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Trailer", trailerError+", "+trailerResult)
	if s.job != "" {
		h.Set(headerJob, s.job)
	}
	s.w.WriteHeader(http.StatusOK)
	s.started = true
}

// end finishes the answer with the stream's result or error.
func (s *streamWriter) end(result json.RawMessage, err error) {
	if err != nil && !s.started {
		writeError(s.w, err)
		return
	}
	if !s.started {
		s.begin()
	}
	if err != nil {
		code, msg := exitCode(err)
		s.w.Header().Set(trailerError, asciiJSON(apiError{Error: msg, ExitCode: code}))
		return
	}
	if result == nil {
		result = json.RawMessage("{}")
	}
	s.w.Header().Set(trailerResult, asciiJSON(result))
}

// postJob starts a job. With follow=true the answer is the job's events
// (jobEvent, one a line) until it ends, and the client hanging up cancels
// the job; otherwise the answer is the job's view, 202, and the job runs
// on by itself.
func (d *daemon) postJob(w http.ResponseWriter, r *http.Request) {
	var req jobRequest
	if err := readBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	follow, err := boolParam(r, "follow")
	if err != nil {
		writeError(w, err)
		return
	}
	prepare, ok := jobKinds[req.Kind]
	if !ok {
		writeError(w, usagef("kind %q: want one of %s", req.Kind, jobKindNames()))
		return
	}
	target, work, err := prepare(d.vault, req.Params)
	if err != nil {
		writeError(w, err)
		return
	}
	j := d.jobs.start(d.ctx, jobSpec{Kind: req.Kind, Target: target, Trigger: triggerManual}, work)
	if !follow {
		writeJSONStatus(w, http.StatusAccepted, j.view(false))
		return
	}
	d.follow(w, r, j)
}

// follow writes the events of job j until it ends. If the client hangs
// up first, the job is cancelled.
func (d *daemon) follow(w http.ResponseWriter, r *http.Request, j *job) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(v any) {
		b, _ := json.Marshal(v)
		w.Write(append(b, '\n'))
	}
	type progressEvent struct {
		Event string `json:"event"`
		Done  int64  `json:"done"`
		Total int64  `json:"total"`
	}
	type lineEvent struct {
		Event string `json:"event"`
		Line  string `json:"line"`
	}
	type jobViewEvent struct {
		Event string  `json:"event"`
		Job   jobView `json:"job"`
	}
	send(jobViewEvent{eventStarted, j.view(false)})
	rc.Flush()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	seq, last := 0, progressView{-1, -1}
	for {
		ended := isDone(j) // then every line is logged already
		lines, next, changed := j.logSince(seq)
		seq = next
		for _, l := range lines {
			send(lineEvent{eventLog, l})
		}
		if p := (progressView{j.done.Load(), j.total.Load()}); p != last && p.Total > 0 {
			send(progressEvent{eventProgress, p.Done, p.Total})
			last = p
		}
		if ended {
			v := j.view(false)
			if v.Result != nil {
				send(struct {
					Event  string          `json:"event"`
					Result json.RawMessage `json:"result"`
				}{eventResult, v.Result})
			}
			if v.Error != "" {
				send(apiErrorEvent{eventError, v.Error, v.ExitCode})
			}
			send(jobViewEvent{eventEnd, v})
			rc.Flush()
			return
		}
		rc.Flush()
		select {
		case <-changed:
		case <-tick.C:
		case <-j.Done():
		case <-r.Context().Done():
			d.jobs.cancel(j.id, errClientGone)
			return
		}
	}
}

func isDone(j *job) bool {
	select {
	case <-j.Done():
		return true
	default:
		return false
	}
}

type apiErrorEvent struct {
	Event    string `json:"event"`
	Error    string `json:"error"`
	ExitCode int    `json:"exit_code"`
}

func boolParam(r *http.Request, name string) (bool, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, usagef("%s=%q: want true or false", name, s)
	}
	return b, nil
}

// getJobs lists the running jobs and the recent finished ones, or with
// all=true every finished job remembered.
func (d *daemon) getJobs(r *http.Request) (any, error) {
	all, err := boolParam(r, "all")
	if err != nil {
		return nil, err
	}
	out := []jobView{}
	for _, j := range d.jobs.list(all) {
		out = append(out, j.view(false))
	}
	return out, nil
}

// maxWait bounds how long GET /v1/jobs/{id}?wait= waits.
const maxWait = time.Minute

// getJob is one job with its log. With wait=DURATION it answers once the
// job has ended, or the duration passed.
func (d *daemon) getJob(r *http.Request) (any, error) {
	id := r.PathValue("id")
	j := d.jobs.get(id)
	if j == nil {
		return nil, fmt.Errorf("%w: %s", errNoJob, id)
	}
	if s := r.URL.Query().Get("wait"); s != "" {
		wait, err := time.ParseDuration(s)
		if err != nil || wait < 0 {
			return nil, usagef("wait=%q: want a duration such as 10s", s)
		}
		ctx, cancel := context.WithTimeout(r.Context(), min(wait, maxWait))
		defer cancel()
		j.wait(ctx)
	}
	return j.view(true), nil
}

// cancelWait is how long POST /v1/jobs/{id}/cancel waits for the job to
// stop before it answers.
const cancelWait = 10 * time.Second

// postCancel cancels a running job and answers once it has stopped (at
// most cancelWait), with its view.
func (d *daemon) postCancel(r *http.Request) (any, error) {
	j, err := d.jobs.cancel(r.PathValue("id"), errCanceledBy)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), cancelWait)
	defer cancel()
	j.wait(ctx)
	return j.view(false), nil
}
