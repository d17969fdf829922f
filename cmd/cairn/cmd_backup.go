package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/snapshot"
)

type backupOptions struct {
	name    string
	sources []string
	format  string
	json    bool
}

func newBackupCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "backup",
		Usage: "back up one or more disks as a new point",
		Description: "Each SOURCE is a raw image file, a block device or a qcow2 file, written PATH or DISK=PATH.\n" +
			"A disk is named after its file without the extension (vda.img is vda) unless DISK= names it.\n" +
			"Several sources make one point of a multi-disk resource. Prints the new point, e.g. web01@20261121T100000Z.",
		ArgsUsage: "--name NAME SOURCE...",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Aliases: []string{"n"}, Usage: "resource name, e.g. web01 (required)"},
			&cli.StringFlag{Name: "source-format", Usage: "raw or qcow2 (default: detected from content)"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := args(c, 1, -1, "--name NAME SOURCE..."); err != nil {
				return err
			}
			if c.String("name") == "" {
				return usagef("--name NAME is required: the resource the point belongs to")
			}
			o := backupOptions{name: c.String("name"), sources: c.Args().Slice(),
				format: c.String("source-format"), json: c.Bool("json")}
			return env.withVault(c, func(v *snapshot.Vault) error { return runBackup(c.Context, env, v, o) })
		},
	}
}

func runBackup(ctx context.Context, env *cmdEnv, v *snapshot.Vault, o backupOptions) error {
	if err := snapshot.CheckName("resource", o.name); err != nil {
		return usagef("--name: %v", err)
	}
	srcs, err := env.openSources(o.sources, o.format)
	if err != nil {
		return err
	}
	defer closeSources(srcs)
	disks := make([]snapshot.DiskSource, len(srcs))
	for i, s := range srcs {
		disks[i] = s.DiskSource
	}
	bar := env.newProgress("backup", false)
	p, err := v.Backup(ctx, o.name, disks, snapshot.BackupOptions{Progress: bar.update})
	bar.done()
	if err != nil {
		return err
	}
	if o.json {
		return writeJSON(env.stdout, newPointView(p))
	}
	fmt.Fprintln(env.stdout, p.Name())
	if env.terminal {
		kind := "incremental"
		if p.Full() {
			kind = "full"
		}
		fmt.Fprintf(env.stderr, "%s backup: %s allocated, %s changed, %s added to the vault in %s\n",
			kind, bytesIEC(p.Allocated()), bytesIEC(p.Changed()), bytesIEC(p.Added), shortDuration(p.Duration))
	}
	return nil
}
