package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
)

// The client side of the daemon's API. A command that works on a vault
// first looks for the daemon that owns it (findDaemon); when one answers,
// the command calls its typed endpoints with its options, and renders
// what comes back exactly as it renders its own results. Without one, the
// command opens the vault itself and runs the same code (dispatch.go).

const socketName = "cairn.sock"

// socketPath is where the daemon of vault dir listens.
func socketPath(getenv func(string) string, vault string) string {
	if s := getenv("CAIRN_SOCKET"); s != "" {
		return s
	}
	return filepath.Join(vault, socketName)
}

// daemonClient talks to one daemon.
type daemonClient struct {
	sock string
	// vault is the vault the command named (--vault, CAIRN_VAULT),
	// absolute, sent with every request; "" when it named none.
	vault string
	hc    *http.Client
}

// findDaemon returns a client of the daemon that owns the vault c works
// on, or nil when none listens (removing a socket a killed daemon left).
// A daemon found through CAIRN_SOCKET may serve another vault: the
// requests name the vault when the command did, and it refuses them then.
func (e *cmdEnv) findDaemon(c *cli.Context) *daemonClient {
	vault := e.path(e.vaultDir(c))
	named := e.getenv("CAIRN_VAULT") != ""
	for _, cc := range c.Lineage() {
		named = named || cc.IsSet("vault")
	}
	sock := socketPath(e.getenv, vault)
	conn, err := net.Dial("unix", sock)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		os.Remove(sock) // stale: its daemon died
		return nil
	case err != nil:
		return nil
	}
	conn.Close()
	cl := newDaemonClient(sock)
	if named {
		cl.vault = vault
	}
	return cl
}

func newDaemonClient(sock string) *daemonClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		DisableCompression: true,
	}
	return &daemonClient{sock: sock, hc: &http.Client{Transport: tr}}
}

// do sends one request; body, when not nil, is sent as JSON. A failed
// request (status 400 and up) is returned as its remoteError.
func (cl *daemonClient) do(ctx context.Context, method, path string, q url.Values, body any) (*http.Response, error) {
	u := "http://cairn" + apiPrefix + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cl.vault != "" {
		req.Header.Set(headerVault, cl.vault)
	}
	resp, err := cl.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, cl.connError(err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, cl.readError(resp)
	}
	return resp, nil
}

// connError explains a failure to talk to the daemon. A daemon of an
// earlier cairn, which spoke another protocol, hangs up at once.
func (cl *daemonClient) connError(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
		return fmt.Errorf("the daemon at %s hung up without an answer (a daemon of another cairn version? restart it)", cl.sock)
	}
	return fmt.Errorf("talk to the daemon at %s: %w", cl.sock, err)
}

func (cl *daemonClient) readError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e apiError
	if json.Unmarshal(b, &e) != nil || e.Error == "" {
		return fmt.Errorf("the daemon at %s answered %s", cl.sock, resp.Status)
	}
	if e.ExitCode == 0 {
		e.ExitCode = 1
	}
	return &remoteError{msg: e.Error, code: e.ExitCode}
}

// call sends a request and decodes its JSON answer into out.
func (cl *daemonClient) call(ctx context.Context, method, path string, q url.Values, body, out any) error {
	resp, err := cl.do(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("the daemon at %s: bad answer: %w", cl.sock, err)
	}
	return nil
}

// followJob starts a job and follows its events to its end: progress to
// bar, log lines to logw (nil: dropped), its result into result (got says one came), its error as the
// returned remoteError. When ctx ends (Ctrl-C), the connection closes,
// which cancels the job; followJob waits for the job to end, so that
// nothing it does outlives the command, and returns ctx's error.
func (cl *daemonClient) followJob(ctx context.Context, kind string, params json.RawMessage, bar *progressBar, result any, logw io.Writer) (got bool, err error) {
	resp, err := cl.do(ctx, http.MethodPost, "/jobs", url.Values{"follow": {"true"}}, jobRequest{Kind: kind, Params: params})
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	id := ""
	var jobErr error
	for {
		var ev jobEvent
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() != nil {
				resp.Body.Close()
				cl.awaitEnd(id)
				return got, ctx.Err()
			}
			return got, fmt.Errorf("the daemon at %s closed the connection before the job ended", cl.sock)
		}
		switch ev.Event {
		case eventStarted:
			if ev.Job != nil {
				id = ev.Job.ID
			}
		case eventProgress:
			bar.update(ev.Done, ev.Total)
		case eventLog:
			if logw != nil {
				bar.above(func() { fmt.Fprintln(logw, ev.Line) })
			}
		case eventResult:
			if result != nil {
				if err := json.Unmarshal(ev.Result, result); err != nil {
					return false, fmt.Errorf("the daemon at %s: bad result: %w", cl.sock, err)
				}
				got = true
			}
		case eventError:
			jobErr = &remoteError{msg: ev.Error, code: max(ev.ExitCode, 1)}
		case eventEnd:
			return got, jobErr
		}
	}
}

// awaitEnd waits, for a while, until job id has ended: a job whose
// client went away is cancelled, and stops within moments.
func (cl *daemonClient) awaitEnd(id string) {
	if id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var v jobView
	cl.call(ctx, http.MethodGet, "/jobs/"+pathSegment(id), url.Values{"wait": {"10s"}}, nil, &v)
}

// stream copies a streamed answer (cat, export -o -) to w and returns
// the trailerResult it ended with. A failure after the first byte comes
// in trailerError, checked after the last byte: the command then fails,
// never leaving a short output looking complete. While it streams, the
// job's progress (when the answer names a job) goes to bar.
func (cl *daemonClient) stream(ctx context.Context, method, path string, q url.Values, body any, w io.Writer, bar *progressBar) (json.RawMessage, error) {
	resp, err := cl.do(ctx, method, path, q, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	id := resp.Header.Get(headerJob)
	if bar != nil && id != "" {
		stop := cl.pollProgress(ctx, id, bar)
		defer stop()
	}
	ww := &errWriter{w: w}
	_, err = io.Copy(ww, resp.Body)
	switch {
	case ww.err != nil:
		return nil, ww.err
	case err != nil && ctx.Err() != nil:
		resp.Body.Close()
		cl.awaitEnd(id)
		return nil, ctx.Err()
	case err != nil:
		return nil, fmt.Errorf("the daemon at %s closed the connection before the command finished", cl.sock)
	}
	if s := resp.Trailer.Get(trailerError); s != "" {
		var e apiError
		if json.Unmarshal([]byte(s), &e) != nil {
			return nil, fmt.Errorf("the daemon at %s: bad error trailer %q", cl.sock, s)
		}
		return nil, &remoteError{msg: e.Error, code: max(e.ExitCode, 1)}
	}
	s := resp.Trailer.Get(trailerResult)
	if s == "" {
		return nil, fmt.Errorf("the daemon at %s ended the stream without saying it was complete", cl.sock)
	}
	return json.RawMessage(s), nil
}

// pollProgress shows a streaming job's progress on bar until stopped.
func (cl *daemonClient) pollProgress(ctx context.Context, id string, bar *progressBar) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			var v jobView
			if cl.call(ctx, http.MethodGet, "/jobs/"+pathSegment(id), nil, nil, &v) == nil && v.State == jobRunning {
				bar.update(v.Progress.Done, v.Progress.Total)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// errWriter keeps the first error of w, to tell a failed write (a closed
// pipe) from a failed read.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}

// pathOf is an API path with a reference in it, escaped.
func pathOf(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString("/" + pathSegment(p))
	}
	return b.String()
}

// pathSegment escapes s as one segment of an API path. "." and ".." are
// escaped too: sent as they are, they are steps along the path, not the
// name the user gave, and the daemon would answer "no such endpoint"
// instead of what the command says of that name without a daemon.
func pathSegment(s string) string {
	if s == "." || s == ".." {
		return strings.Repeat("%2E", len(s))
	}
	return url.PathEscape(s)
}
