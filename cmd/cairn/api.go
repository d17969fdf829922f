package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/cairn-backup/cairn/snapshot"
	"github.com/cairn-backup/cairn/snapshot/policy"
)

// The daemon's API: JSON over HTTP/1.1 on the vault's unix socket, every
// path under /v1/ (API.md documents each endpoint). This file holds what
// the client and the daemon share: the vocabulary of requests, events and
// errors, and the kinds of job a client may start, each of which runs the
// very code the command runs when it opens the vault itself.

const apiPrefix = "/v1"

// Headers and trailers of the API.
const (
	// headerVault carries the vault a request is for, absolute, when the
	// command named one (--vault, CAIRN_VAULT): the daemon refuses the
	// request unless it is its own.
	headerVault = "Cairn-Vault"
	// headerJob names the job a streamed response (export -o -) belongs to.
	headerJob = "Cairn-Job"
	// trailerError ends a streamed response that failed after its first
	// byte: an apiError. trailerResult ends one that succeeded, with its
	// --json view when it has one.
	trailerError  = "Cairn-Error"
	trailerResult = "Cairn-Result"
)

// apiError is the body of every failed request, and the trailerError of
// a stream: the one line a command prints and the code it exits with.
type apiError struct {
	Error    string `json:"error"`
	ExitCode int    `json:"exit_code"`
}

// remoteError is an error the daemon reported: the command prints its
// line and exits with its code, as it would have done itself.
type remoteError struct {
	msg  string
	code int
}

func (e *remoteError) Error() string { return e.msg }

// httpStatus is the status of a failed request. The exit code in the
// body says what the command does; the status says it to HTTP clients.
func httpStatus(err error) int {
	var ue usageError
	switch {
	case errors.As(err, &ue):
		return http.StatusBadRequest
	case errors.Is(err, errWrongVault):
		return http.StatusMisdirectedRequest
	case errors.Is(err, errNoEndpoint), errors.Is(err, errNoJob), errors.Is(err, snapshot.ErrNoPoint), errors.Is(err, snapshot.ErrNoDisk),
		errors.Is(err, policy.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, errNotAllowed):
		return http.StatusMethodNotAllowed
	case errors.Is(err, errForbidden):
		return http.StatusForbidden
	case errors.Is(err, snapshot.ErrGCRunning), errors.Is(err, snapshot.ErrLocked), errors.Is(err, errJobEnded),
		errors.Is(err, snapshot.ErrPinned), errors.Is(err, snapshot.ErrInUse), errors.Is(err, snapshot.ErrAmbiguous), errors.Is(err, snapshot.ErrDisksChanged):
		return http.StatusConflict
	case errors.Is(err, snapshot.ErrCapacity):
		return http.StatusInsufficientStorage
	}
	return http.StatusInternalServerError
}

var (
	errNoEndpoint = errors.New("no such endpoint")
	errNotAllowed = errors.New("method not allowed")
	errForbidden  = errors.New("forbidden")
	errWrongVault = errors.New("wrong vault")
)

// jobRequest is the body of POST /v1/jobs.
type jobRequest struct {
	Kind   string          `json:"kind"`
	Params json.RawMessage `json:"params,omitempty"`
}

// Events of a followed job (POST /v1/jobs?follow=true), one JSON object a
// line: started, then progress and log in any number, then result and/or
// error, then end.
const (
	eventStarted  = "started"  // job: the job's view
	eventProgress = "progress" // done, total: bytes
	eventLog      = "log"      // line: a line of the job's log
	eventResult   = "result"   // result: the --json view of the job's command
	eventError    = "error"    // error, exit_code: as apiError
	eventEnd      = "end"      // job: the job's final view; the response ends
)

// jobEvent is an event as a client reads it.
type jobEvent struct {
	Event    string          `json:"event"`
	Job      *jobView        `json:"job,omitempty"`
	Done     int64           `json:"done"`
	Total    int64           `json:"total"`
	Line     string          `json:"line,omitempty"`
	Result   json.RawMessage `json:"result,omitempty"`
	Error    string          `json:"error,omitempty"`
	ExitCode int             `json:"exit_code,omitempty"`
}

// jobKind decodes and checks the params of a job a client asks for, and
// returns the job's target and its work. A bad request is a usageError.
type jobKind func(v *snapshot.Vault, params json.RawMessage) (target string, work jobFunc, err error)

// jobKinds are the jobs POST /v1/jobs starts. A command that opens the
// vault itself runs the same entry (runJobHere), so its work, checks and
// results are one implementation wherever it runs.
var jobKinds = map[string]jobKind{
	"backup":  jobOf(backupRequest.target, runBackup),
	"restore": jobOf(restoreRequest.target, runRestore),
	"export":  jobOf(exportFileRequest.target, runExportFile),
	"verify":  jobOf(verifyRequest.target, runVerify),
	"prune":   jobOf(pruneRequest.target, runPrune),
	"gc":      jobOf(gcRequest.target, runGC),
	"delete":  jobOf(refsRequest.target, runDelete),
	"pin":     jobOf(refsRequest.target, runPin),
	"unpin":   jobOf(refsRequest.target, runUnpin),
	"run":     jobOf(runRequest.target, runPolicyJob),
}

func jobKindNames() string {
	var names []string
	for k := range jobKinds {
		names = append(names, k)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// checker is a request that can say what is wrong with it (a
// usageError) before any work starts.
type checker interface{ check() error }

// jobOf makes the jobKind of a request type P from its target and its
// work.
func jobOf[P any, R any](target func(P) string, work func(context.Context, *snapshot.Vault, P, *jobContext) (R, error)) jobKind {
	return func(v *snapshot.Vault, raw json.RawMessage) (string, jobFunc, error) {
		var p P
		if err := decodeStrict(raw, &p); err != nil {
			return "", nil, usagef("params: %v", err)
		}
		if c, ok := any(&p).(checker); ok {
			if err := c.check(); err != nil {
				return "", nil, err
			}
		}
		return target(p), func(ctx context.Context, jc *jobContext) (any, error) {
			return work(ctx, v, p, jc)
		}, nil
	}
}

// decodeStrict decodes one JSON value into v, refusing fields v lacks,
// so a misspelt option is an error rather than ignored. Empty is {}.
func decodeStrict(raw []byte, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON value")
	}
	return nil
}

// asciiJSON marshals v to one line of ASCII, as a header value must be.
func asciiJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(apiError{Error: "unencodable result: " + err.Error(), ExitCode: 1})
	}
	var s strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		b = b[n:]
		switch {
		case r < utf8.RuneSelf:
			s.WriteRune(r)
		case r > 0xffff:
			r -= 0x10000
			fmt.Fprintf(&s, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		default:
			fmt.Fprintf(&s, `\u%04x`, r)
		}
	}
	return s.String()
}
