package main

import (
	"errors"

	"github.com/urfave/cli/v2"

	cairnfs "github.com/cairn-backup/cairn/fs"
)

func cacheFlag() cli.Flag {
	return &cli.StringFlag{Name: "cache-size", Value: "256M", Usage: "memory for decompressed blocks, e.g. 256M, 1G"}
}

func daemonOpts(env *cmdEnv, c *cli.Context, mountpoint string) (daemonOptions, error) {
	if env.vault != nil {
		return daemonOptions{}, errors.New(c.Command.Name + " cannot run through a daemon")
	}
	size, err := parseSize(c.String("cache-size"))
	if err != nil {
		return daemonOptions{}, usagef("--cache-size: %v", err)
	}
	return daemonOptions{vault: env.path(env.vaultDir(c)), mountpoint: env.path(mountpoint),
		allowOther: c.Bool("allow-other"), cacheSize: size}, nil
}

func newDaemonCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "daemon",
		Usage: "own the vault: serve other cairn commands on a socket, and optionally mount it",
		Description: "Badger admits one process per vault, so the daemon opens it and every other cairn command\n" +
			"runs through its unix socket (VAULT/cairn.sock, mode 0600). Stops cleanly on SIGINT or SIGTERM.",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "mount", Usage: "also mount every point at this directory"},
			&cli.StringFlag{Name: "socket", Usage: "socket path (default VAULT/cairn.sock; clients find it with CAIRN_SOCKET)"},
			&cli.BoolFlag{Name: "allow-other", Usage: "let other users see the mount"},
			cacheFlag(),
		},
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
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "allow-other", Usage: "let other users see the mount"},
			cacheFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := args(c, 1, 1, "MOUNTPOINT [--allow-other] [--cache-size SIZE]"); err != nil {
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
