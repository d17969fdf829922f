package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// The jobs endpoints of the daemon's API: start a job (and follow its
// events), list jobs, show one, cancel one.

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
