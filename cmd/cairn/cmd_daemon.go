package main

import (
	"errors"
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
	if env.vault != nil {
		return daemonOptions{}, errors.New(c.Command.Name + " cannot run through a daemon")
	}
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
		Description: "Badger admits one process per vault, so the daemon opens it and every other cairn command\n" +
			"runs through its unix socket (VAULT/cairn.sock, mode 0600). Stops cleanly on SIGINT or SIGTERM.",
		ArgsUsage: " ",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "mount", Usage: "also mount every point at this directory"},
			&cli.StringFlag{Name: "socket", Usage: "socket path (default VAULT/cairn.sock; clients find it with CAIRN_SOCKET)"},
		}, serveFlags()...),
		Action: func(c *cli.Context) error {
			if err := args(c, 0, 0, "[--mount MOUNTPOINT] [--socket PATH]"); err != nil {
				return err
			}
			o, err := daemonOpts(env, c, c.String("mount"))
			if err != nil {
				return err
			}
			if s := c.String("socket"); s != "" {
				o.socket = env.path(s)
			}
			return runDaemon(c.Context, env, o)
		},
	}
}

func newMountCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "mount",
		Usage: "mount every point read-only, in the foreground (a daemon for the vault meanwhile)",
		Description: "MOUNTPOINT/RESOURCE/ID/DISK.raw is each disk of each point; MOUNTPOINT/RESOURCE/latest is the\n" +
			"newest point. Ctrl-C or SIGTERM unmounts cleanly; so does cairn umount MOUNTPOINT.",
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
		Name:      "umount",
		Usage:     "unmount a cairn mount; its process then exits cleanly",
		ArgsUsage: "MOUNTPOINT",
		Action: func(c *cli.Context) error {
			if err := args(c, 1, 1, "MOUNTPOINT"); err != nil {
				return err
			}
			return cairnfs.Unmount(env.path(c.Args().First()))
		},
	}
}
