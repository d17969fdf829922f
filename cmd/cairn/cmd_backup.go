package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/image"
	"github.com/cairn-backup/cairn/snapshot"
)

// backupRequest is a backup job's params.
type backupRequest struct {
	Name             string       `json:"name"` // the resource
	Disks            []backupDisk `json:"disks"`
	SourceFormat     string       `json:"source_format,omitempty"` // raw or qcow2; "" detects
	RequireSameDisks bool         `json:"require_same_disks,omitempty"`
	// Libvirt, instead of Disks: a running domain's disks (libvirt.go).
	Libvirt *libvirtRequest `json:"libvirt,omitempty"`
}

func (r backupRequest) target() string { return r.Name }

func (r *backupRequest) check() error {
	if r.Name == "" {
		return usagef("--name NAME is required: the resource the point belongs to")
	}
	if err := snapshot.CheckName("resource", r.Name); err != nil {
		return usagef("--name: %v", err)
	}
	if r.Libvirt != nil {
		if len(r.Disks) > 0 {
			return usagef("--libvirt DOMAIN backs up the domain's disks: give no SOURCE")
		}
		return r.Libvirt.check()
	}
	if len(r.Disks) == 0 {
		return usagef("usage: cairn backup --name NAME SOURCE...")
	}
	for _, d := range r.Disks {
		if isNBD(d.Path) {
			if _, err := parseNBDSource(d.Path); err != nil {
				return usagef("source %s: %v", d.Path, err)
			}
			continue
		}
		if !filepath.IsAbs(d.Path) {
			return usagef("source %s: the path must be absolute", d.Path)
		}
		if err := snapshot.CheckName("disk", d.Name); err != nil {
			return usagef("source %s: %v (name it with DISK=PATH)", d.Path, err)
		}
	}
	switch r.SourceFormat {
	case "", image.FormatRaw, image.FormatQcow2:
		return nil
	}
	return usagef("--source-format %q: want raw or qcow2", r.SourceFormat)
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
			"A SOURCE may be an NBD URI (nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH, and\n" +
			"their nbds forms), named after its export: the disk a server such as qemu-nbd,\n" +
			"qemu-storage-daemon or QEMU serves; holes it reports are not read. Two parameters of cairn's:\n" +
			"  bitmap=NAME      read only the blocks QEMU's dirty bitmap NAME reports changed, the others\n" +
			"                   taken from the latest point, when that point recorded checkpoint NAME for\n" +
			"                   the disk and the size is the same; otherwise the disk is read in full and a\n" +
			"                   note says why (stderr, and --json's bitmap_unused)\n" +
			"  checkpoint=NAME  the bitmap NAME began recording when the exported state was taken; the\n" +
			"                   new point records it so the next backup may read from bitmap=NAME\n\n" +
			"--libvirt DOMAIN backs up a running libvirt domain's disks instead (--name defaults to DOMAIN):\n" +
			"it freezes the guest's filesystems through its agent, begins a pull-mode backup with a new\n" +
			"checkpoint, thaws, reads each disk (named after its target, e.g. vda) over NBD, only the changes\n" +
			"since the latest point's checkpoint when libvirt still has it, and ends the backup job. A failed\n" +
			"freeze stops the backup, or with --hook-failure continue gives a crash-consistent point.\n\n" +
			"Examples:\n" +
			"  cairn backup --name web01 /var/lib/libvirt/images/web01.img\n" +
			"  cairn backup --name db01 vda=/dev/vg0/db01-root vdb=/dev/vg0/db01-data\n" +
			"  cairn backup --name vm1 --require-same-disks --json vm1.qcow2\n" +
			"  cairn backup --name vm1 'nbd+unix:///vda?socket=/run/vm1-backup.sock&checkpoint=c2'\n" +
			"  cairn backup --name vm1 'vda=nbd://10.0.0.5:10809/vda?bitmap=c2&checkpoint=c3'\n" +
			"  cairn backup --libvirt web01 --hook-failure continue",
		ArgsUsage: "--name NAME SOURCE... | --libvirt DOMAIN",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Aliases: []string{"n"}, Usage: "resource name, e.g. web01 (required)"},
			&cli.StringFlag{Name: "source-format", Usage: "raw or qcow2 (default: detected from content)"},
			&cli.BoolFlag{Name: "require-same-disks", Usage: "fail, reading nothing, if the disks differ from the latest point's"},
			&cli.StringFlag{Name: "libvirt", Usage: "back up the running libvirt `DOMAIN`'s disks (pull-mode backup)"},
			&cli.StringFlag{Name: "libvirt-socket", Usage: "libvirtd's socket `PATH`", Value: defaultLibvirtSocket},
			&cli.StringFlag{Name: "hook-failure", Usage: "with --libvirt: abort or continue when the freeze fails", Value: "abort"},
			&cli.StringFlag{Name: "scratch-dir", Usage: "with --libvirt: `DIR` for the export's socket and scratch images (default $TMPDIR)"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			if dom := c.String("libvirt"); dom != "" {
				if err := args(c, 0, 0, "--libvirt DOMAIN [--name NAME]"); err != nil {
					return err
				}
				name := c.String("name")
				if name == "" {
					name = dom
				}
				req := backupRequest{Name: name, RequireSameDisks: c.Bool("require-same-disks"),
					Libvirt: &libvirtRequest{Domain: dom, Socket: c.String("libvirt-socket"),
						HookFailure: c.String("hook-failure"), ScratchDir: env.path(c.String("scratch-dir"))}}
				var pv pointView
				return env.job(c, "backup", req, env.newProgress("backup", false), &pv,
					func() error { return renderBackup(env, &pv, c.Bool("json")) })
			}
			if err := args(c, 1, -1, "--name NAME SOURCE..."); err != nil {
				return err
			}
			if c.String("name") == "" {
				return usagef("--name NAME is required: the resource the point belongs to")
			}
			disks, err := env.sourceArgs(c.Args().Slice())
			if err != nil {
				return err
			}
			req := backupRequest{Name: c.String("name"), Disks: disks, SourceFormat: c.String("source-format"),
				RequireSameDisks: c.Bool("require-same-disks")}
			var pv pointView
			return env.job(c, "backup", req, env.newProgress("backup", false), &pv,
				func() error { return renderBackup(env, &pv, c.Bool("json")) })
		},
	}
}

// runBackup backs up the request's disks as a new point.
func runBackup(ctx context.Context, v *snapshot.Vault, r backupRequest, jc *jobContext) (*pointView, error) {
	if r.Libvirt != nil {
		return runLibvirtBackup(ctx, v, r, jc)
	}
	srcs, err := openSources(ctx, r.Disks, r.SourceFormat)
	if err != nil {
		return nil, err
	}
	defer closeSources(srcs)
	disks := make([]snapshot.DiskSource, len(srcs))
	for i, s := range srcs {
		disks[i] = s.DiskSource
		jc.logf("disk %s: %s (%s)", s.Name, s.Path, s.describe())
	}
	p, err := v.Backup(ctx, r.Name, disks, snapshot.BackupOptions{Progress: jc.progress, RequireSameDisks: r.RequireSameDisks})
	if err != nil {
		return nil, err
	}
	return backupDone(p, jc), nil
}

// backupDone logs a committed backup into its job and makes its view.
func backupDone(p *snapshot.Point, jc *jobContext) *pointView {
	for _, d := range p.Disks {
		if d.BitmapUnused != "" {
			jc.logf("disk %s: %s; read in full", d.Name, d.BitmapUnused)
		}
	}
	jc.logf("committed %s: %s read, %s added to the vault", p.Name(), bytesIEC(pointRead(p)), bytesIEC(p.Added))
	jc.setBytes("added", p.Added)
	pv := newPointView(p)
	return &pv
}

// renderBackup prints a new point: its name (or --json view), and for a
// person at a terminal what each disk cost.
func renderBackup(env *cmdEnv, pv *pointView, asJSON bool) error {
	if c := pv.DiskChanges; !c.None() && !env.quiet {
		// Said whether or not a person watches: a disk that went missing
		// from a resource must not go unnoticed in a cron job's mail.
		fmt.Fprintf(env.stderr, "cairn: note: %s has other disks than %s: %s\n", pv.Point, pv.Parent, c)
	}
	for _, d := range pv.Disks {
		if d.BitmapUnused != "" && !env.quiet {
			// A full read where an incremental was asked for is slow,
			// not wrong; said on one line, whoever watches.
			fmt.Fprintf(env.stderr, "cairn: note: disk %s: %s; read in full\n", d.Name, d.BitmapUnused)
		}
	}
	if asJSON {
		return writeJSON(env.stdout, pv)
	}
	fmt.Fprintln(env.stdout, pv.Point)
	for _, d := range pv.Disks {
		how := "read in full"
		if d.Bitmap != "" {
			how = "read from bitmap " + d.Bitmap
		}
		env.summaryf("%s %s: %s allocated, %s changed, %s added; %s read (%s)", d.Type, d.Name, bytesIEC(d.Allocated),
			bytesIEC(d.Changed), bytesIEC(d.Added), bytesIEC(d.Read), how)
	}
	env.summaryf("backed up %s in %s: %s added to the vault", pv.Point, shortDuration(secondsDuration(pv.Seconds)), bytesIEC(pv.Added))
	return nil
}
