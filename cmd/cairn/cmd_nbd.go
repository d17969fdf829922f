package main

import (
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/image/nbd"
)

// cairn nbd serves one disk of a point over NBD, read-only, as a job:
// the daemon's when one owns the vault (POST /v1/nbd starts it and
// answers once it listens; the command prints the URI and returns),
// else this process's, which owns the vault meanwhile as cairn mount
// does and serves until SIGINT or SIGTERM. The work is runNBD
// (nbdserve.go) either way.

const nbdUsage = "POINT [--disk DISK] [--socket PATH | --listen HOST:PORT [--allow-remote]] [--export-name NAME] [--tls-cert FILE --tls-key FILE] [--json]"

// maxSocketPath is the longest path a unix socket can have (sun_path
// holds 108 bytes with the NUL).
const maxSocketPath = 107

func newNBDCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "nbd",
		Usage: "serve a point's disk read-only over NBD, to boot a VM from it (instant recovery)",
		Description: "Serves the disk as an NBD export (the protocol qemu, qemu-img, qemu-nbd and nbd-client\n" +
			"speak): read-only, holes reported (qemu-img map, convert and block-stream skip them),\n" +
			"requests answered in parallel. A VM boots from a qcow2 overlay backed by the export, which\n" +
			"takes its writes; qemu-img rebase or virsh blockpull then copies the rest into the overlay,\n" +
			"after which the export may stop (see README.md, Instant recovery).\n\n" +
			"When a daemon owns the vault, it serves the export as a job: the command prints the URI and\n" +
			"returns; cairn cancel ID (ID from cairn jobs) stops it. Otherwise the command serves in the\n" +
			"foreground, owning the vault as cairn mount does (other commands go through it meanwhile),\n" +
			"until Ctrl-C or SIGTERM. While served, the point cannot be deleted, prune keeps it and gc\n" +
			"keeps its blocks.\n\n" +
			"It listens on a unix socket (mode 0600), by default nbd-JOB.sock beside the daemon's socket,\n" +
			"or with --listen on TCP, loopback only unless --allow-remote: NBD has no authentication, so\n" +
			"serving beyond the machine is for trusted networks, with TLS (--tls-cert, --tls-key: PEM\n" +
			"files) recommended; with them every client must start TLS (NBD_OPT_STARTTLS). The export is\n" +
			"named after the disk unless --export-name. A damaged block fails the read that needs it with\n" +
			"an I/O error, never wrong bytes, and is logged. Prints the URI to give qemu; --json prints\n" +
			"{job, point, disk, export, uri, socket or address, tls, size}.\n\n" +
			"Examples:\n" +
			"  cairn nbd web01@latest --socket /run/web01.sock\n" +
			"  qemu-img create -f qcow2 -b 'nbd+unix:///vda?socket=/run/web01.sock' -F raw web01.qcow2\n" +
			"  cairn nbd db01@latest --disk vdb --listen 127.0.0.1:10809 --json\n" +
			"  cairn nbd web01@20261121T10 --listen 0.0.0.0:10809 --allow-remote --tls-cert srv.pem --tls-key srv.key",
		ArgsUsage: "POINT",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "disk", Usage: "the disk to serve, for points with several disks"},
			&cli.StringFlag{Name: "socket", Usage: "serve on this unix socket", DefaultText: "nbd-JOB.sock beside the daemon's socket"},
			&cli.StringFlag{Name: "listen", Usage: "serve on TCP at HOST:PORT instead (port 0 picks one)"},
			&cli.BoolFlag{Name: "allow-remote", Usage: "let --listen take an address other machines reach"},
			&cli.StringFlag{Name: "export-name", Usage: "the export's name", DefaultText: "the disk's name"},
			&cli.StringFlag{Name: "tls-cert", Usage: "require TLS, with this certificate (PEM)"},
			&cli.StringFlag{Name: "tls-key", Usage: "the certificate's private key (PEM)"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := args(c, 1, 1, nbdUsage); err != nil {
				return err
			}
			req := nbdRequest{Point: c.Args().First(), Disk: c.String("disk"), Socket: env.path(c.String("socket")),
				Listen: c.String("listen"), AllowRemote: c.Bool("allow-remote"), ExportName: c.String("export-name"),
				TLSCert: env.path(c.String("tls-cert")), TLSKey: env.path(c.String("tls-key"))}
			for _, f := range []string{"socket", "listen", "export-name", "tls-cert", "tls-key", "disk"} {
				if c.IsSet(f) && c.String(f) == "" {
					return usagef("--%s: give a value", f)
				}
			}
			if err := req.check(); err != nil {
				return err
			}
			if req.Listen != "" && req.TLSCert == "" {
				if host, _, _ := net.SplitHostPort(req.Listen); !nbd.IsLoopback(host) {
					env.warnf("serving %s without TLS: whoever reaches it reads the disk (--tls-cert and --tls-key are recommended)", req.Listen)
				}
			}
			asJSON := c.Bool("json")
			if cl := env.findDaemon(c); cl != nil {
				var v nbdView
				if err := cl.call(c.Context, http.MethodPost, "/nbd", nil, req, &v); err != nil {
					return err
				}
				return renderNBD(env, &v, asJSON, false)
			}
			o := daemonOptions{vault: env.path(env.vaultDir(c)), cacheSize: defaultCacheSize, nbd: &req,
				nbdReady: func(v nbdView) { renderNBD(env, &v, asJSON, true) }}
			return runDaemon(c.Context, env, o)
		},
	}
}

// defaultCacheSize is the block cache of a process serving the vault
// when no --cache-size says otherwise (as serveFlags' default).
const defaultCacheSize = 256 << 20

// nbdRequest is what to serve and where: the body of POST /v1/nbd.
type nbdRequest struct {
	Point string `json:"point"`
	Disk  string `json:"disk,omitempty"`
	// Socket is the unix socket's path, absolute. With neither it nor
	// Listen, the socket is nbd-JOB.sock beside the daemon's.
	Socket      string `json:"socket,omitempty"`
	Listen      string `json:"listen,omitempty"` // HOST:PORT
	AllowRemote bool   `json:"allow_remote,omitempty"`
	ExportName  string `json:"export_name,omitempty"` // "": the disk's name
	// TLSCert and TLSKey (absolute paths of PEM files, read where the
	// export runs) make the server require TLS.
	TLSCert string `json:"tls_cert,omitempty"`
	TLSKey  string `json:"tls_key,omitempty"`
}

// check refuses what no server could do (a usageError).
func (r *nbdRequest) check() error {
	switch {
	case r.Point == "":
		return usagef("usage: cairn nbd %s", nbdUsage)
	case r.Socket != "" && r.Listen != "":
		return usagef("--socket and --listen: give one, a unix socket or a TCP address")
	case r.AllowRemote && r.Listen == "":
		return usagef("--allow-remote goes with --listen")
	case (r.TLSCert == "") != (r.TLSKey == ""):
		return usagef("--tls-cert and --tls-key go together")
	case r.TLSCert != "" && (!filepath.IsAbs(r.TLSCert) || !filepath.IsAbs(r.TLSKey)):
		return usagef("--tls-cert and --tls-key: the paths must be absolute")
	}
	if r.Socket != "" {
		if !filepath.IsAbs(r.Socket) {
			return usagef("--socket %s: the path must be absolute", r.Socket)
		}
		if len(r.Socket) > maxSocketPath {
			return usagef("--socket %s: a unix socket's path holds at most %d bytes; give a shorter one", r.Socket, maxSocketPath)
		}
	}
	if r.Listen != "" {
		host, port, err := net.SplitHostPort(r.Listen)
		if n, perr := strconv.ParseUint(port, 10, 16); err != nil || perr != nil || (n == 0 && port != "0") {
			return usagef("--listen %s: want HOST:PORT, e.g. 127.0.0.1:10809 (port 0 picks one)", r.Listen)
		}
		if !r.AllowRemote && !nbd.IsLoopback(host) {
			return usagef("--listen %s: not a loopback address; serving a disk to other machines needs --allow-remote (and --tls-cert, --tls-key are recommended)", r.Listen)
		}
	}
	if n := r.ExportName; n != "" && (len(n) > 4096 || !utf8.ValidString(n) || containsNUL(n)) {
		return usagef("--export-name: want at most 4096 bytes of UTF-8 without NUL")
	}
	return nil
}

func containsNUL(s string) bool {
	for i := range len(s) {
		if s[i] == 0 {
			return true
		}
	}
	return false
}

// nbdView is a served export: what cairn nbd --json prints and POST
// /v1/nbd answers.
type nbdView struct {
	Job    string `json:"job,omitempty"` // the job serving it
	Point  string `json:"point"`
	Disk   string `json:"disk"`
	Export string `json:"export"`
	URI    string `json:"uri"`
	// Socket (a unix socket) or Address (TCP, HOST:PORT) it listens on.
	Socket  string `json:"socket,omitempty"`
	Address string `json:"address,omitempty"`
	TLS     bool   `json:"tls"`
	Size    int64  `json:"size"` // bytes
}

// renderNBD prints the URI (or the view) once the export listens, and
// says on stderr how it stops: in the foreground with Ctrl-C (for a
// person at a terminal), in the daemon with cairn cancel (always, the
// job's ID being needed then).
func renderNBD(env *cmdEnv, v *nbdView, asJSON, foreground bool) error {
	if asJSON {
		return writeJSON(env.stdout, v)
	}
	fmt.Fprintln(env.stdout, v.URI)
	what := fmt.Sprintf("%s disk %s (%s)", v.Point, v.Disk, bytesIEC(v.Size))
	switch {
	case env.quiet:
	case foreground:
		env.summaryf("serving %s read-only; Ctrl-C stops it", what)
	default:
		fmt.Fprintf(env.stderr, "job %s of the daemon serves %s read-only; cairn cancel %s stops it\n", v.Job, what, v.Job)
	}
	return nil
}
