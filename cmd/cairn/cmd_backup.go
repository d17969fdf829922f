package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/snapshot"
)

type backupOptions struct {
	name      string
	sources   []string
	format    string
	sameDisks bool
	json      bool
}

func newBackupCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "backup",
		Usage: "back up one or more disks as a new point",
		Description: "Each SOURCE is a raw image file, a block device or a qcow2 file, written PATH or DISK=PATH.\n" +
			"A disk is named after its file without the extension (vda.img is vda) unless DISK= names it.\n" +
			"Several sources make one point of a multi-disk resource. Prints the new point, e.g. web01@20261121T100000Z.\n\n" +
			"Each disk is compared with the same disk of the resource's latest point, so only its changed\n" +
			"blocks are new (incremental); a disk read from the same path under a new name counts as renamed.\n" +
			"A disk the latest point lacks is backed up in full, and one the new point lacks is reported as\n" +
			"removed (on stderr, and in --json's disk_changes); --require-same-disks refuses such a backup.\n\n" +
			"A source must not change while it is read: one whose size or allocation changes fails the\n" +
			"backup and nothing is committed. Back up a snapshot (LVM, ZFS, qemu) of a disk in use.\n\n" +
			"Examples:\n" +
			"  cairn backup --name web01 /var/lib/libvirt/images/web01.img\n" +
			"  cairn backup --name db01 vda=/dev/vg0/db01-root vdb=/dev/vg0/db01-data\n" +
			"  cairn backup --name vm1 --require-same-disks --json vm1.qcow2",
		ArgsUsage: "--name NAME SOURCE...",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Aliases: []string{"n"}, Usage: "resource name, e.g. web01 (required)"},
			&cli.StringFlag{Name: "source-format", Usage: "raw or qcow2 (default: detected from content)"},
			&cli.BoolFlag{Name: "require-same-disks", Usage: "fail, reading nothing, if the disks differ from the latest point's"},
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
				format: c.String("source-format"), sameDisks: c.Bool("require-same-disks"), json: c.Bool("json")}
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
	p, err := v.Backup(ctx, o.name, disks, snapshot.BackupOptions{Progress: bar.update, RequireSameDisks: o.sameDisks})
	bar.done()
	if err != nil {
		return err
	}
	if c := p.DiskChanges(); !c.None() && !env.quiet {
		// Said whether or not a person watches: a disk that went missing
		// from a resource must not go unnoticed in a cron job's mail.
		fmt.Fprintf(env.stderr, "cairn: note: %s has other disks than %s@%s: %s\n", p.Name(), p.Resource, p.Parent, c)
	}
	if o.json {
		return writeJSON(env.stdout, newPointView(p))
	}
	fmt.Fprintln(env.stdout, p.Name())
	for _, d := range p.Disks {
		kind := "incremental"
		if !d.Incremental(p) {
			kind = "full"
		}
		env.summaryf("%s %s: %s allocated, %s changed, %s added", kind, d.Name, bytesIEC(d.Allocated),
			bytesIEC(d.Changed), bytesIEC(d.Added))
	}
	env.summaryf("backed up %s in %s: %s added to the vault", p.Name(), shortDuration(p.Duration), bytesIEC(p.Added))
	return nil
}
