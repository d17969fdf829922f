package main

import (
	"errors"
	"net"
	"os"
	"os/user"
	"strconv"

	"github.com/urfave/cli/v2"

	cairnfs "github.com/cairn-backup/cairn/fs"
)

// serveFlags are the flags of a process that owns the vault and may
// mount it: mount and daemon.
func serveFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "allow-other", Usage: "let other users in: they see guest files as the guest's modes allow"},
		&cli.StringFlag{Name: "disk-mode", Usage: "mode of DISK.raw and partN.raw, read bits only (default 0400, 0440 with --disk-group; needs --allow-other)"},
		&cli.StringFlag{Name: "disk-group", Usage: "group (name or number) of DISK.raw and partN.raw (default yours; needs --allow-other)"},
		&cli.StringFlag{Name: "cache-size", Value: "256M", Usage: "memory for decompressed blocks, e.g. 256M, 1G"},
	}
}

func daemonOpts(env *cmdEnv, c *cli.Context, mountpoint string) (daemonOptions, error) {
	size, err := parseSize(c.String("cache-size"))
	if err != nil {
		return daemonOptions{}, usagef("--cache-size: %v", err)
	}
	o := daemonOptions{vault: env.path(env.vaultDir(c)), mountpoint: env.path(mountpoint),
		allowOther: c.Bool("allow-other"), cacheSize: size}
	o.diskMode = 0o400
	if g := c.String("disk-group"); g != "" {
		gid, err := lookupGroup(g)
		if err != nil {
			return o, usagef("--disk-group %s: %v", g, err)
		}
		o.diskGid = &gid
		o.diskMode = 0o440 // naming a group is sharing with it
	}
	if m := c.String("disk-mode"); m != "" {
		mode, err := strconv.ParseUint(m, 8, 32)
		if err != nil || mode == 0 || mode&^0o444 != 0 {
			return o, usagef("--disk-mode %s: want an octal mode with read bits only, such as 0400 or 0440", m)
		}
		o.diskMode = os.FileMode(mode)
	}
	if (o.diskMode != 0o400 || o.diskGid != nil) && !o.allowOther {
		return o, usagef("--disk-mode and --disk-group share disk files with other users, who need --allow-other to enter the mount")
	}
	return o, nil
}

// lookupGroup returns the gid of a group name or number. A number needs
// no entry in the group database.
func lookupGroup(g string) (uint32, error) {
	if n, err := strconv.ParseUint(g, 10, 32); err == nil {
		return uint32(n), nil
	}
	grp, err := user.LookupGroup(g)
	if err != nil {
		return 0, errors.New("no such group")
	}
	n, err := strconv.ParseUint(grp.Gid, 10, 32)
	if err != nil {
		return 0, err
	}
	return uint32(n), nil
}

func newDaemonCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "daemon",
		Usage: "own the vault: serve other cairn commands on a socket, and optionally mount it",
		Description: "Runs in the foreground and keeps the vault open. Every other command on this vault (backup,\n" +
			"points, restore, delete, ...) finds the daemon's socket and has the daemon do its work, with the\n" +
			"same output and exit codes; Ctrl-C on the command cancels its job there. The daemon runs the work\n" +
			"as jobs: cairn jobs lists them, cairn job show ID shows one, cairn cancel ID stops one, and its log\n" +
			"has one line per job end. The socket serves a versioned HTTP API (JSON; see API.md) to root and to\n" +
			"the daemon's own user only. It is VAULT/cairn.sock, mode 0600, unless --socket PATH puts it\n" +
			"elsewhere: commands then find it through CAIRN_SOCKET=PATH, and one that names another vault\n" +
			"(--vault, CAIRN_VAULT) is refused there. With --mount, every point is also served read-only at\n" +
			"MOUNTPOINT, as by cairn mount (see cairn mount --help). SIGINT or SIGTERM stops it cleanly:\n" +
			"running jobs are cancelled, the mount and the socket go.\n\n" +
			"Examples:\n" +
			"  cairn daemon --mount /srv/cairn\n" +
			"  cairn --vault /srv/vault daemon --socket /run/cairn.sock\n" +
			"  CAIRN_SOCKET=/run/cairn.sock cairn points\n" +
			"  curl --unix-socket /var/lib/cairn/cairn.sock http://cairn/v1/status",
		ArgsUsage: " ",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "mount", Usage: "also mount every point at this directory"},
			&cli.StringFlag{Name: "socket", Usage: "socket path (default VAULT/cairn.sock; clients find it with CAIRN_SOCKET)"},
			&cli.StringFlag{Name: "listen", Usage: "serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9469)"},
		}, serveFlags()...),
		Action: func(c *cli.Context) error {
			if err := args(c, 0, 0, "[--mount MOUNTPOINT] [--socket PATH] [--listen ADDR]"); err != nil {
				return err
			}
			o, err := daemonOpts(env, c, c.String("mount"))
			if err != nil {
				return err
			}
			if s := c.String("socket"); s != "" {
				o.socket = env.path(s)
			}
			if l := c.String("listen"); l != "" {
				if _, _, err := net.SplitHostPort(l); err != nil {
					return usagef("--listen %s: want HOST:PORT, e.g. 127.0.0.1:9469", l)
				}
				o.listen = l
			}
			return runDaemon(c.Context, env, o)
		},
	}
}

func newMountCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "mount",
		Usage: "mount every point read-only, in the foreground (a daemon for the vault meanwhile)",
		Description: "Every point of the vault, read-only, while the command runs:\n\n" +
			"  MOUNTPOINT/RESOURCE/latest             the newest point (a symlink to its ID)\n" +
			"  MOUNTPOINT/RESOURCE/ID/DISK.raw        the whole disk, byte for byte (holes show to SEEK_HOLE)\n" +
			"  MOUNTPOINT/RESOURCE/ID/DISK/partN/...  the files of partition N\n" +
			"  MOUNTPOINT/RESOURCE/ID/DISK/partN.raw  partition N, raw\n" +
			"  MOUNTPOINT/RESOURCE/ID/DISK/...        the files of a disk that is a bare filesystem\n\n" +
			"Guest files keep their modes and owners, and the kernel enforces them. A disk file (DISK.raw,\n" +
			"partN.raw) holds every guest file whatever its mode, so it is mode 0400 and yours. Only you\n" +
			"see the mount unless --allow-other (as non-root, that needs user_allow_other in\n" +
			"/etc/fuse.conf): other users then read guest files as their modes allow, and disk files only\n" +
			"as --disk-group (mode 0440 then) and --disk-mode share them.\n\n" +
			"Meanwhile the process owns the vault, as cairn daemon does: other commands run through it,\n" +
			"and the vault's policies run on their schedules (a paused policy does not).\n" +
			"Ctrl-C or SIGTERM unmounts cleanly; so does cairn umount MOUNTPOINT. A mount left by a cairn\n" +
			"that was killed is removed by the next cairn mount at that place.\n\n" +
			"Examples:\n" +
			"  cairn mount /mnt/cairn\n" +
			"  cairn mount --allow-other --disk-group disk /mnt/cairn\n" +
			"  cp --sparse=always /mnt/cairn/web01/latest/vda.raw /tmp/vda.img",
		ArgsUsage: "MOUNTPOINT",
		Flags:     serveFlags(),
		Action: func(c *cli.Context) error {
			if err := args(c, 1, 1, "MOUNTPOINT [--allow-other [--disk-mode MODE] [--disk-group GROUP]] [--cache-size SIZE]"); err != nil {
				return err
			}
			o, err := daemonOpts(env, c, c.Args().First())
			if err != nil {
				return err
			}
			return runDaemon(c.Context, env, o)
		},
	}
}

func newUmountCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "umount",
		Usage: "unmount a cairn mount; its process then exits cleanly",
		Description: "Also removes a dead mount that a killed cairn left behind. A mount still in use\n" +
			"(a shell inside it, an open file) is detached at once and goes when the last file closes.\n\n" +
			"Examples:\n" +
			"  cairn umount /mnt/cairn",
		ArgsUsage: "MOUNTPOINT",
		Action: func(c *cli.Context) error {
			if err := args(c, 1, 1, "MOUNTPOINT"); err != nil {
				return err
			}
			return cairnfs.Unmount(env.path(c.Args().First()))
		},
	}
}
