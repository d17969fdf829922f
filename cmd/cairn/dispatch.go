package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/snapshot"
)

// How a command that works on a vault runs: it parses its command line
// into a typed request, then has the work done where the vault is open,
// in the daemon that owns it or here, and renders the view that comes
// back. The work (compute) and the printing (render) are the same code
// in both cases; only the transport differs.

// job runs a job of kind with params, for the command c: in the daemon
// when one owns the vault, else here. Its progress goes to bar (nil: no
// bar). When the job returns a result, it is decoded into result and
// render is called; the job's error, if any, is returned after that, so
// a report printed before a failure (verify) prints either way.
func (e *cmdEnv) job(c *cli.Context, kind string, params any, bar *progressBar, result any, render func() error) error {
	raw, err := json.Marshal(params)
	if err != nil {
		return err
	}
	var got bool
	if cl := e.findDaemon(c); cl != nil {
		got, err = cl.followJob(c.Context, kind, raw, bar, result, e.jobLog)
	} else {
		err = e.withVault(c, func(v *snapshot.Vault) error {
			var jerr error
			jc := &jobContext{onProgress: bar.update}
			if e.jobLog != nil {
				jc.onLog = func(line string) { bar.above(func() { fmt.Fprintln(e.jobLog, line) }) }
			}
			got, jerr = runJobHere(c.Context, v, kind, raw, jc, result)
			return jerr
		})
	}
	bar.done()
	if !got || render == nil {
		return err
	}
	if rerr := render(); err == nil {
		err = rerr
	}
	return err
}

// runJobHere runs a job kind in this process, as the daemon would: the
// same checks, work and result (decoded into result through JSON, as a
// client of the daemon gets it).
func runJobHere(ctx context.Context, v *snapshot.Vault, kind string, params json.RawMessage, jc *jobContext, result any) (got bool, err error) {
	prepare, ok := jobKinds[kind]
	if !ok {
		return false, fmt.Errorf("no job kind %q", kind)
	}
	_, work, err := prepare(v, params)
	if err != nil {
		return false, err
	}
	res, err := work(ctx, jc)
	b, merr := json.Marshal(res)
	if merr != nil || string(b) == "null" || result == nil {
		return false, err
	}
	if uerr := json.Unmarshal(b, result); uerr != nil {
		return false, uerr
	}
	return true, err
}

// ask runs a quick request for the command c, a read (GET) or a small
// change: method on path from the daemon when one owns the vault, else
// local on the vault opened here.
func ask[V any](e *cmdEnv, c *cli.Context, method, path string, q url.Values, body any, local func(v *snapshot.Vault) (V, error)) (V, error) {
	var out V
	if cl := e.findDaemon(c); cl != nil {
		err := cl.call(c.Context, method, path, q, body, &out)
		return out, err
	}
	err := e.withVault(c, func(v *snapshot.Vault) error {
		var err error
		out, err = local(v)
		return err
	})
	return out, err
}

// stream runs a command whose output is bytes (cat, export -o -): the
// daemon streams them, or local writes them here, to w. The result, when
// there is one, is decoded into result. Progress goes to bar.
func (e *cmdEnv) stream(c *cli.Context, method, path string, q url.Values, body any, w io.Writer, bar *progressBar,
	result any, local func(v *snapshot.Vault, w io.Writer, jc *jobContext) (any, error)) error {
	defer bar.done()
	if cl := e.findDaemon(c); cl != nil {
		raw, err := cl.stream(c.Context, method, path, q, body, w, bar)
		if err != nil || result == nil {
			return err
		}
		return json.Unmarshal(raw, result)
	}
	return e.withVault(c, func(v *snapshot.Vault) error {
		res, err := local(v, w, &jobContext{onProgress: bar.update})
		if err != nil || result == nil {
			return err
		}
		b, err := json.Marshal(res)
		if err != nil {
			return err
		}
		return json.Unmarshal(b, result)
	})
}
