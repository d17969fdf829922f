package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	cairnfs "github.com/cairn-backup/cairn/fs"
	"github.com/cairn-backup/cairn/snapshot"
)

// daemon owns an open vault: it serves other cairn commands on a unix
// socket and, optionally, the FUSE mount of every point.
type daemon struct {
	vault  *snapshot.Vault
	dir    string      // the vault's directory, absolute
	dirFI  os.FileInfo // and its identity, to compare a client's vault with
	sock   string
	ln     net.Listener
	mount  *fuse.Server
	mpoint string
	log    *log.Logger
	jobs   sync.WaitGroup
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
	d := &daemon{vault: v, sock: o.socket, log: logger}
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
	if err := sdNotify("READY=1"); err != nil {
		logger.Printf("tell systemd the daemon is ready: %v", err)
	}

	serveCtx, cancelJobs := context.WithCancel(ctx)
	go d.serve(serveCtx)
	select {
	case <-ctx.Done():
		logger.Printf("shutting down")
		sdNotify("STOPPING=1")
	case <-unmounted:
		logger.Printf("%s was unmounted; shutting down", o.mountpoint)
	}
	cancelJobs()
	d.ln.Close()
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
	d.jobs.Wait()
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

func (d *daemon) serve(ctx context.Context) {
	for {
		conn, err := d.ln.Accept()
		if err != nil {
			return
		}
		d.jobs.Add(1)
		go func() {
			defer d.jobs.Done()
			defer conn.Close()
			d.handle(ctx, conn)
		}()
	}
}

// handle runs one client's command line with the daemon's vault.
func (d *daemon) handle(ctx context.Context, conn net.Conn) {
	typ, payload, err := readFrame(conn)
	if err != nil || typ != frameRequest {
		return
	}
	var req daemonRequest
	if err := json.Unmarshal(payload, &req); err != nil || len(req.Args) == 0 {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		// Any frame or a closed connection means the client is gone or
		// pressed Ctrl-C: cancel its job.
		readFrame(conn)
		cancel()
	}()
	var mu sync.Mutex
	env := &cmdEnv{
		stdout:         frameWriter{&mu, conn, frameStdout},
		stderr:         frameWriter{&mu, conn, frameStderr},
		terminal:       req.Terminal,
		stdoutTerminal: req.StdoutTerminal,
		width:          req.Width,
		stdoutWidth:    req.StdoutWidth,
		getenv:         func(k string) string { return req.Env[k] },
		cwd:            req.Cwd,
		vault:          d.vault,
	}
	if req.TZ != "" {
		if loc, err := time.LoadLocation(strings.TrimPrefix(req.TZ, ":")); err == nil {
			env.loc = loc
		}
	}
	cmd, _, _, _ := commandOf(req.Args, env.getenv)
	code := 1
	if err := d.checkVault(req); err != nil {
		d.log.Printf("refused %s for a client: %v", cmd, err)
		reportError(env, req.Args, 1, oneLine(err))
	} else {
		d.log.Printf("running %s for a client", cmd)
		code = run(ctx, env, req.Args)
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(code))
	mu.Lock()
	writeFrame(conn, frameExit, b[:])
	mu.Unlock()
}

// checkVault refuses a request that names a vault other than the
// daemon's. A client finds the daemon through CAIRN_SOCKET whatever
// vault its command names; running the command on the daemon's vault
// instead would back up into, or delete from, the wrong one. Comparing
// the directories' identities lets symlinks and relative paths agree.
func (d *daemon) checkVault(req daemonRequest) error {
	if !req.VaultNamed {
		return nil
	}
	if fi, err := os.Stat(req.Vault); err == nil && os.SameFile(fi, d.dirFI) {
		return nil
	}
	return fmt.Errorf("this command names vault %s, but the daemon at %s serves %s: "+
		"unset CAIRN_SOCKET to use %s, or name %s (or no vault) to use the daemon's",
		req.Vault, d.sock, d.dir, req.Vault, d.dir)
}
