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
	"github.com/cairn-backup/cairn/snapshot"
)

// daemon owns an open vault: it serves the API (server.go) on a unix
// socket, runs jobs, and optionally serves the FUSE mount of every point.
//
// The lead extends it here: the policies and their scheduler (which
// starts jobs through d.jobs.start with trigger "policy NAME" and records
// skipped runs with d.jobs.skip), and the --listen server of /metrics.
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
}

// runDaemon serves until ctx ends (SIGINT, SIGTERM) or the mount is
// unmounted from outside, then shuts down cleanly: no socket, no mount
// left behind.
func runDaemon(ctx context.Context, env *cmdEnv, o daemonOptions) error {
	logger := log.New(env.stderr, "cairn: ", log.LstdFlags)
	v, err := snapshot.Open(o.vault, snapshot.Options{CacheSize: o.cacheSize, Logf: logger.Printf})
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
	logger.Printf("serving %s on %s", o.vault, d.sock)

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
	// The lead adds here, once the API serves: the scheduler of the
	// policies (a goroutine ending with serveCtx, starting jobs through
	// d.jobs.start and d.jobs.skip), the --listen server of /metrics,
	// and sd_notify READY=1 (STOPPING=1 below, at "shutting down").
	select {
	case <-ctx.Done():
		logger.Printf("shutting down")
	case <-unmounted:
		logger.Printf("%s was unmounted; shutting down", o.mountpoint)
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
	return nil
}

// listen creates the socket, mode 0600, after making sure no live daemon
// already has it. A socket nobody answers on is a leftover and goes.
func (d *daemon) listen() error {
	if c, err := net.Dial("unix", d.sock); err == nil {
		c.Close()
		return fmt.Errorf("a cairn daemon already serves this vault on %s", d.sock)
	}
	if err := os.Remove(d.sock); err == nil {
		d.log.Printf("removed stale socket %s", d.sock)
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
