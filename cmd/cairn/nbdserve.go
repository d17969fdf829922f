package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/cairn-backup/cairn/image/nbd"
	"github.com/cairn-backup/cairn/snapshot"
)

// The work of an NBD export job (cmd_nbd.go has the command): the vault
// side of package image/nbd, which knows no vaults. The point is in use
// (Vault.Use) while served: gc keeps its blocks, prune keeps it and
// delete refuses it, so a VM running from an overlay on the export never
// loses its backing disk to retention.

// nbdResult is an export job's result, once it stopped.
type nbdResult struct {
	nbdView
	Reads      int64   `json:"reads"`       // read requests answered with data
	BytesRead  int64   `json:"bytes_read"`  // bytes they held
	ReadErrors int64   `json:"read_errors"` // reads answered with an I/O error (damaged blocks)
	Seconds    float64 `json:"duration_seconds"`
}

// nbdExport is a point's disk as an nbd.Export: the DiskReader (holes
// from the point's block map, the vault's block size, prefetch for
// NBD_CMD_CACHE) with a description and counters. The server shares it
// between connections: DiskReader's reads are stateless.
type nbdExport struct {
	*snapshot.DiskReader
	desc                 string
	reads, bytes, failed atomic.Int64
}

var (
	_ nbd.Export     = (*nbdExport)(nil)
	_ nbd.DataFinder = (*nbdExport)(nil)
	_ nbd.BlockSizer = (*nbdExport)(nil)
	_ nbd.Prefetcher = (*nbdExport)(nil)
	_ nbd.Describer  = (*nbdExport)(nil)
)

// ReadAt reads through the DiskReader, which verifies every block: a
// damaged one fails the read, and the server answers EIO.
func (e *nbdExport) ReadAt(p []byte, off int64) (int, error) {
	n, err := e.DiskReader.ReadAt(p, off)
	if err != nil && !(errors.Is(err, io.EOF) && n == len(p)) {
		e.failed.Add(1)
		return n, err
	}
	e.reads.Add(1)
	e.bytes.Add(int64(n))
	return n, err
}

func (e *nbdExport) Description() string { return e.desc }

// runNBD serves the request's disk until ctx ends, then returns its
// result and ctx's error (the job is canceled: that is how an export
// stops). ready is called once the server listens, with what to tell
// the user. logf gets the server's lines: failed reads, broken clients.
func runNBD(ctx context.Context, v *snapshot.Vault, r nbdRequest, jc *jobContext, logf func(string, ...any), ready func(nbdView)) (*nbdResult, error) {
	p, err := v.Resolve(r.Point)
	if err != nil {
		return nil, err
	}
	jc.setTarget(p.Name())
	why := "exported over NBD"
	if id := jc.id(); id != "" {
		why = "exported over NBD by job " + id
	}
	defer v.Use(p, why)()
	// A delete between Resolve and Use would leave an export of a point
	// gone from the vault: look again now that it is held.
	if _, err := v.Point(p.Resource, p.ID); err != nil {
		return nil, err
	}
	dr, err := v.OpenDisk(p, r.Disk)
	if err != nil {
		return nil, err
	}
	d := dr.Disk()
	name := r.ExportName
	if name == "" {
		name = d.Name
	}
	var tlsCfg *tls.Config
	if r.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(r.TLSCert, r.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert %s, --tls-key %s: %w", r.TLSCert, r.TLSKey, err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	view := nbdView{Job: jc.id(), Point: p.Name(), Disk: d.Name, Export: name, TLS: tlsCfg != nil, Size: d.Size}
	var ln net.Listener
	if r.Listen != "" {
		if ln, err = nbd.ListenTCP(r.Listen, r.AllowRemote); err != nil {
			return nil, err
		}
		view.Address = publicAddr(r.Listen, ln.Addr())
		view.URI = nbd.URI{Network: "tcp", Address: view.Address, Export: name, TLS: view.TLS}.String()
	} else {
		if ln, err = nbd.ListenUnix(r.Socket, 0o600); err != nil {
			return nil, err
		}
		view.Socket = r.Socket
		view.URI = nbd.URI{Network: "unix", Address: r.Socket, Export: name, TLS: view.TLS}.String()
	}
	exp := &nbdExport{DiskReader: dr, desc: fmt.Sprintf("cairn %s disk %s, read-only", p.Name(), d.Name)}
	srv, err := nbd.NewServer(nbd.Options{
		Lookup: func(_ context.Context, n string) (nbd.Export, error) {
			if n != name && n != "" { // "" is the default export
				return nil, fmt.Errorf("%w: %q (this server exports %q)", nbd.ErrUnknownExport, n, name)
			}
			return exp, nil
		},
		List: func(context.Context) ([]nbd.ExportInfo, error) {
			return []nbd.ExportInfo{{Name: name, Description: exp.desc}}, nil
		},
		TLSConfig:  tlsCfg,
		RequireTLS: tlsCfg != nil,
		Logf:       logf,
	})
	if err != nil {
		ln.Close()
		return nil, err
	}
	jc.logf("serving %s disk %s (%s) read-only at %s", p.Name(), d.Name, bytesIEC(d.Size), view.URI)
	ready(view)
	start := time.Now()
	serr := srv.Serve(ctx, ln)
	res := &nbdResult{nbdView: view, Reads: exp.reads.Load(), BytesRead: exp.bytes.Load(), ReadErrors: exp.failed.Load(),
		Seconds: seconds(time.Since(start))}
	jc.setBytes("read", res.BytesRead)
	jc.logf("stopped: %d reads, %s read, %d failed", res.Reads, bytesIEC(res.BytesRead), res.ReadErrors)
	if serr != nil {
		return res, serr
	}
	return res, ctx.Err()
}

// publicAddr is the HOST:PORT to put in the URI: the host as the user
// gave it (a name stays a name, for TLS), with the port the listener
// got; for a wildcard host, this machine's name.
func publicAddr(given string, got net.Addr) string {
	host, _, _ := net.SplitHostPort(given)
	_, port, err := net.SplitHostPort(got.String())
	if err != nil {
		return got.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if h, err := os.Hostname(); err == nil && h != "" {
			host = h
		} else {
			host = "localhost"
		}
	}
	return net.JoinHostPort(host, port)
}

// postNBD starts an export job and answers, once it listens, with its
// view (the job's ID in it); the job runs until cancelled.
func (d *daemon) postNBD(r *http.Request) (any, error) {
	var req nbdRequest
	if err := readBody(r, &req); err != nil {
		return nil, err
	}
	if err := req.check(); err != nil {
		return nil, err
	}
	_, v, err := d.startNBD(req, false)
	return v, err
}

// startNBD starts an export job and waits until it listens (its view)
// or fails (its error). A quiet job's end is left out of the log.
func (d *daemon) startNBD(req nbdRequest, quiet bool) (*job, nbdView, error) {
	ready := make(chan nbdView, 1)
	var failed error // set before the job ends
	j := d.jobs.start(d.ctx, jobSpec{Kind: "nbd", Target: req.Point, Trigger: triggerManual, Quiet: quiet}, func(ctx context.Context, jc *jobContext) (any, error) {
		r := req
		if r.Socket == "" && r.Listen == "" {
			r.Socket = filepath.Join(filepath.Dir(d.sock), "nbd-"+jc.id()+".sock")
		}
		logf := func(format string, args ...any) {
			jc.logf(format, args...)
			d.log.Printf("job %s: %s", jc.id(), fmt.Sprintf(format, args...))
		}
		res, err := runNBD(ctx, d.vault, r, jc, logf, func(v nbdView) { ready <- v })
		if err != nil && ctx.Err() == nil {
			failed = err
		}
		if res == nil {
			return nil, err // no nbdResult(nil) in the job's view
		}
		return res, err
	})
	select {
	case v := <-ready:
		return j, v, nil
	case <-j.Done():
		if failed == nil {
			failed = errors.New("the export stopped before it served") // cancelled at once
		}
		return j, nbdView{}, failed
	}
}
