package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	cairnfs "github.com/cairn-backup/cairn/fs"
	"github.com/cairn-backup/cairn/index"
	"github.com/cairn-backup/cairn/snapshot"
)

// daemon owns an open vault: it serves the API (server.go) on a unix
// socket, runs jobs, and optionally serves the FUSE mount of every point.
//
// It runs the vault's policies on their schedules (scheduler.go), each
// run a job, and with --listen serves Prometheus metrics on TCP.
type daemon struct {
	vault   *snapshot.Vault
	dir     string      // the vault's directory, absolute
	dirFI   os.FileInfo // and its identity, to compare a client's vault with
	sock    string
	uid     int // the daemon's uid: it and root may use the API
	ln      net.Listener
	srv     *http.Server
	mux     *http.ServeMux
	mount   *fuse.Server
	mpoint  string
	log     *log.Logger
	jobs    *jobManager
	sched   *scheduler
	metrics *metrics
	ctx     context.Context // ends at shutdown; every job's parent
	started time.Time
}

type daemonOptions struct {
	vault      string
	socket     string
	mountpoint string
	allowOther bool
	diskMode   os.FileMode // of disk files in the mount
	diskGid    *uint32     // nil: the process's group
	cacheSize  int64
	listen     string // ADDR of the /metrics server; "": none
	// nbd, when set, is an export to serve as a job from the start (cairn
	// nbd without a daemon): the process stops when that job ends, and
	// nbdReady is told where it listens.
	nbd      *nbdRequest
	nbdReady func(nbdView)
}

// runDaemon serves until ctx ends (SIGINT, SIGTERM) or the mount is
// unmounted from outside, then shuts down cleanly: no socket, no mount
// left behind.
func runDaemon(ctx context.Context, env *cmdEnv, o daemonOptions) error {
	logger := log.New(env.stderr, "cairn: ", log.LstdFlags)
	opts := snapshot.Options{CacheSize: o.cacheSize, Logf: logger.Printf}
	v, err := snapshot.Open(o.vault, opts)
	if errors.Is(err, index.ErrNoWrite) {
		// A full (or read-only) filesystem still serves reads: points,
		// the mount, restores; what writes fails with ErrReadOnly.
		opts.ReadOnly = true
		v, err = snapshot.Open(o.vault, opts)
	}
	if errors.Is(err, snapshot.ErrLocked) {
		return fmt.Errorf("%s: another cairn process (a daemon or a mount?) owns this vault", o.vault)
	}
	if err != nil {
		return err
	}
	defer v.Close()
	clock := time.Now
	d := &daemon{vault: v, sock: o.socket, log: logger, uid: os.Getuid(), started: clock(),
		jobs: &jobManager{clock: clock, logf: logger.Printf}}
	if d.dir, err = filepath.Abs(o.vault); err != nil {
		return err
	}
	if d.dirFI, err = os.Stat(d.dir); err != nil {
		return err
	}
	if d.sock == "" {
		d.sock = socketPath(env.getenv, o.vault)
	}
	if err := d.listen(); err != nil {
		return err
	}
	defer d.closeSocket()
	d.metrics = newMetrics(v, func(ctx context.Context) ([]policyView, error) { return listPolicies(ctx, v) })
	d.jobs.ended = func(kind string, state jobState) { d.metrics.jobEnded(kind, string(state)) }
	var metricsLn net.Listener
	if o.listen != "" {
		if metricsLn, err = net.Listen("tcp", o.listen); err != nil {
			return fmt.Errorf("--listen %s: %w", o.listen, err)
		}
		defer metricsLn.Close()
	}

	var unmounted chan struct{}
	if o.mountpoint != "" {
		d.mpoint = o.mountpoint
		d.mount, err = cairnfs.Mount(o.mountpoint, v, cairnfs.MountOptions{
			AllowOther: o.allowOther, DiskMode: o.diskMode, DiskGid: o.diskGid,
			Logf: logger.Printf, FsName: "cairn:" + o.vault,
			Debug: env.getenv("CAIRN_FUSE_DEBUG") != ""})
		if err != nil {
			return err
		}
		unmounted = make(chan struct{})
		go func() { d.mount.Wait(); close(unmounted) }()
		logger.Printf("mounted %s at %s", o.vault, o.mountpoint)
	}
	if o.nbd == nil {
		logger.Printf("serving %s on %s", o.vault, d.sock)
	}
	if err := sdNotify("READY=1"); err != nil {
		logger.Printf("tell systemd the daemon is ready: %v", err)
	}

	serveCtx, stopServing := context.WithCancel(ctx)
	d.ctx = serveCtx
	d.mux = d.routes()
	d.srv = &http.Server{
		Handler:           d,
		ConnContext:       withPeer,
		BaseContext:       func(net.Listener) context.Context { return serveCtx },
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          logger,
	}
	go d.srv.Serve(d.ln)
	if metricsLn != nil {
		msrv := &http.Server{Handler: d.metrics.handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: logger}
		go msrv.Serve(metricsLn)
		defer msrv.Close()
		logger.Printf("serving metrics on http://%s/metrics", metricsLn.Addr())
	}
	var export *job // the nbd job, when serving one
	var exportEnded <-chan struct{}
	var runErr error
	if o.nbd != nil {
		// Its end is the command's to report, not a line in the log.
		j, v, err := d.startNBD(*o.nbd, true)
		if err != nil {
			runErr = err
			stopServing()
		} else {
			export, exportEnded = j, j.Done()
			o.nbdReady(v)
		}
	}
	d.sched = newScheduler(v.Store().Storage(), newPolicyRunner(v, clock), managerJobs{ctx: serveCtx, m: d.jobs}, logger.Printf)
	schedDone := make(chan struct{})
	if runErr == nil {
		go func() { d.sched.loop(serveCtx); close(schedDone) }()
	} else {
		close(schedDone)
	}
	defer func() { <-schedDone }()
	select {
	case <-ctx.Done():
		logger.Printf("shutting down")
		sdNotify("STOPPING=1")
	case <-unmounted:
		logger.Printf("%s was unmounted; shutting down", o.mountpoint)
	case <-exportEnded:
		switch v := export.view(false); v.State {
		case jobFailed:
			runErr = &remoteError{msg: v.Error, code: max(v.ExitCode, 1)}
		default:
			logger.Printf("the export ended (%s); shutting down", v.Error)
		}
	case <-serveCtx.Done(): // the export failed to start
	}
	// Jobs first, so that their followers say why they ended; then the
	// server, once its answers are over.
	d.jobs.shutdown(errShuttingDown)
	stopServing()
	d.jobs.wait()
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := d.srv.Shutdown(shutCtx); err != nil {
		d.srv.Close()
	}
	cancel()
	if d.mount != nil {
		select {
		case <-unmounted:
		default:
			if err := d.mount.Unmount(); err != nil {
				logger.Printf("unmount %s: %v; detaching it lazily", o.mountpoint, err)
				if err := cairnfs.Unmount(o.mountpoint); err != nil {
					logger.Printf("unmount %s: %v", o.mountpoint, err)
				}
			}
			// A lazily detached mount lives on while files are open in
			// it; leaving ends the connection and frees the kernel side.
			select {
			case <-unmounted:
			case <-time.After(2 * time.Second):
				logger.Printf("files are still open in %s; they will read as errors from now on", o.mountpoint)
			}
		}
	}
	return runErr
}

// listen creates the socket, mode 0600, after making sure no live daemon
// already has it. A socket nobody answers on is a leftover and goes.
func (d *daemon) listen() error {
	if c, err := net.Dial("unix", d.sock); err == nil {
		c.Close()
		return fmt.Errorf("a cairn daemon already serves this vault on %s", d.sock)
	}
	// Only a socket is a leftover: --socket naming some other file must
	// not delete it.
	if fi, err := os.Lstat(d.sock); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("listen on %s: the file exists and is not a socket (name another with --socket)", d.sock)
		}
		if err := os.Remove(d.sock); err == nil {
			d.log.Printf("removed stale socket %s", d.sock)
		}
	}
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", d.sock)
	syscall.Umask(old)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", d.sock, err)
	}
	if err := os.Chmod(d.sock, 0o600); err != nil {
		ln.Close()
		return err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	d.ln = ln
	return nil
}

func (d *daemon) closeSocket() {
	d.ln.Close()
	os.Remove(d.sock)
}
