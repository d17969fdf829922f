package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"strings"
	"syscall"
	"time"
)

// The daemon's side of the API (api.go holds what the client shares):
// the router, the checks every request passes (the peer's uid, the vault
// it names), and the handlers. API.md documents every endpoint.

// routes returns the daemon's router. Reads answer the views their
// commands print with --json; work runs as jobs.
//
// Policies: server_policy.go. Metrics are served on a listener of
// their own (--listen), never on this socket's mux.
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
	mux.HandleFunc("POST /v1/nbd", d.api(d.postNBD))
	mux.HandleFunc("POST /v1/jobs", d.postJob)
	mux.HandleFunc("GET /v1/jobs", d.api(d.getJobs))
	mux.HandleFunc("GET /v1/jobs/{id}", d.api(d.getJob))
	mux.HandleFunc("POST /v1/jobs/{id}/cancel", d.api(d.postCancel))
	mux.HandleFunc("GET /v1/policies", d.api(d.getPolicies))
	mux.HandleFunc("GET /v1/policies/{name}", d.api(d.getPolicy))
	mux.HandleFunc("PUT /v1/policies/{name}", d.api(d.putPolicy))
	mux.HandleFunc("DELETE /v1/policies/{name}", d.api(d.deletePolicy))
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
	if _, pattern := d.mux.Handler(r); pattern == "" || !cleanPath(r.URL.EscapedPath()) {
		writeError(w, d.noRoute(r))
		return
	}
	d.mux.ServeHTTP(w, r)
}

// cleanPath reports whether p is as path.Clean leaves it, but for a
// trailing slash.
func cleanPath(p string) bool {
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c == p
}

// noRoute says why r has no handler: no such path, or not that method.
func (d *daemon) noRoute(r *http.Request) error {
	// A path that is not clean ("/v1/points/.", "/v1//x") names no
	// endpoint: the mux would answer it with a redirect, not an error.
	if !cleanPath(r.URL.EscapedPath()) {
		return fmt.Errorf("%w: %s %s (see API.md)", errNoEndpoint, r.Method, r.URL.Path)
	}
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
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
	// Daemon is false when no daemon owns the vault: then only Vault,
	// Capacity and Policies are set (by cairn status itself).
	Daemon   bool         `json:"daemon"`
	PID      int          `json:"pid,omitempty"`
	Version  string       `json:"version,omitempty"`
	API      string       `json:"api,omitempty"`
	Vault    string       `json:"vault"`
	Socket   string       `json:"socket,omitempty"`
	Mount    string       `json:"mount,omitempty"`
	Started  time.Time    `json:"started,omitzero"`
	Uptime   float64      `json:"uptime_seconds,omitempty"`
	Capacity capacityView `json:"capacity"`
	Jobs     []jobView    `json:"jobs"` // the running ones
	// Policies are the vault's policies, each with its schedule, its
	// last run and its next.
	Policies []policyView `json:"policies"`
	// Problems are what the daemon cannot do as asked (a policy it
	// cannot read); absent when none.
	Problems []string `json:"problems,omitempty"`
}

type capacityView struct {
	Used  int64 `json:"used"`
	Total int64 `json:"total,omitempty"` // absent: no capacity set
}

func (d *daemon) getStatus(r *http.Request) (any, error) {
	s := statusView{Daemon: true, PID: os.Getpid(), Version: versionString(), API: "v1", Vault: d.dir, Socket: d.sock, Mount: d.mpoint,
		Started: d.started.UTC(), Uptime: seconds(d.jobs.now().Sub(d.started)),
		Capacity: capacityView{Used: d.vault.Used(), Total: d.vault.Config().Capacity}, Jobs: []jobView{}}
	for _, j := range d.jobs.list(false) {
		if v := j.view(false); v.State == jobRunning {
			s.Jobs = append(s.Jobs, v)
		}
	}
	ps, err := listPolicies(r.Context(), d.vault)
	if ps == nil {
		ps = []policyView{}
	}
	s.Policies = ps
	if err != nil {
		s.Problems = append(s.Problems, oneLine(err))
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
