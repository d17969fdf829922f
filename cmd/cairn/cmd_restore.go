package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/snapshot"
)

type restoreOptions struct {
	point   string
	disk    string
	target  string
	force   bool
	skipBad bool
	json    bool
}

func newRestoreCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "restore",
		Usage: "write a point's disk to a file or block device",
		Description: "TARGET is a new file (written sparse: zero blocks become holes), an existing file with\n" +
			"--force, a block device at least as large as the disk, or a directory, which receives\n" +
			"DISK.raw for each disk of the point (or the one chosen with --disk).\n" +
			"A file target appears under its name only once it is complete, with mode 0600.\n" +
			"A damaged block stops the restore, naming its offset; with --skip-damaged, the restore goes on,\n" +
			"damaged ranges are written as zeros, listed, and the command exits 1 with the target kept.\n\n" +
			"Examples:\n" +
			"  cairn restore web01@latest /tmp/web01.img\n" +
			"  cairn restore db01@latest --disk vdb /dev/vg0/db01-data-new\n" +
			"  cairn restore db01@20261121T10 /tmp/db01/",
		ArgsUsage: "POINT TARGET",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "disk", Usage: "the disk to restore, for points with several disks"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing target file"},
			&cli.BoolFlag{Name: "skip-damaged", Usage: "restore what can be read of a damaged point: damaged ranges become zeros, listed, exit 1"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := args(c, 2, 2, "POINT [--disk DISK] TARGET"); err != nil {
				return err
			}
			o := restoreOptions{point: c.Args().Get(0), disk: c.String("disk"), target: env.path(c.Args().Get(1)),
				force: c.Bool("force"), skipBad: c.Bool("skip-damaged"), json: c.Bool("json")}
			return env.withVault(c, func(v *snapshot.Vault) error { return runRestore(c.Context, env, v, o) })
		},
	}
}

type restoreResult struct {
	Point   string               `json:"point"`
	Disk    string               `json:"disk"`
	Target  string               `json:"target"`
	Size    int64                `json:"size"`
	Written int64                `json:"bytes_written"`
	Seconds float64              `json:"duration_seconds"`
	Damaged *snapshot.DiskDamage `json:"damaged,omitempty"` // ranges left as zeros (--skip-damaged)
}

func runRestore(ctx context.Context, env *cmdEnv, v *snapshot.Vault, o restoreOptions) error {
	p, err := v.Resolve(o.point)
	if err != nil {
		return err
	}
	defer v.Hold(p)() // a prune and gc meanwhile do not pull blocks from under us
	disks := p.Disks
	if o.disk != "" {
		d := p.Disk(o.disk)
		if d == nil {
			_, err := v.OpenDisk(p, o.disk) // for its error message
			return err
		}
		disks = []snapshot.Disk{*d}
	}
	targets := map[string]string{} // disk → path
	st, err := os.Stat(o.target)
	switch {
	case err == nil && st.IsDir():
		for _, d := range disks {
			targets[d.Name] = filepath.Join(o.target, d.Name+".raw")
		}
	case len(disks) > 1:
		_, err := v.OpenDisk(p, "")
		return err
	default:
		targets[disks[0].Name] = o.target
	}
	var results []restoreResult
	var damaged []string
	for _, d := range disks {
		start := time.Now()
		written, err := restoreDisk(ctx, env, v, p, &d, targets[d.Name], o)
		var dr *snapshot.DamagedRestore
		if errors.As(err, &dr) {
			damaged = append(damaged, dr.Error())
			err = nil
		}
		if err != nil {
			return err
		}
		r := restoreResult{Point: p.Name(), Disk: d.Name, Target: targets[d.Name],
			Size: d.Size, Written: written, Seconds: seconds(time.Since(start))}
		if dr != nil {
			r.Damaged = &dr.Damage
		}
		results = append(results, r)
	}
	if o.json {
		if err := writeJSON(env.stdout, results); err != nil {
			return err
		}
	} else {
		for _, r := range results {
			env.summaryf("restored %s disk %s to %s (%s) in %s", r.Point, r.Disk, r.Target,
				bytesIEC(r.Size), shortDuration(time.Duration(r.Seconds*float64(time.Second))))
		}
	}
	if len(damaged) > 0 {
		return fmt.Errorf("restored all but damaged ranges, written as zeros: %s", strings.Join(damaged, "; "))
	}
	return nil
}

// restoreDisk writes one disk to path: a block device in place, a file
// through replaceFile, so no half-written file ever carries its name.
func restoreDisk(ctx context.Context, env *cmdEnv, v *snapshot.Vault, p *snapshot.Point, d *snapshot.Disk, path string, o restoreOptions) (int64, error) {
	force := o.force
	st, err := os.Stat(path)
	if err == nil && st.Mode()&fs.ModeDevice != 0 && st.Mode()&fs.ModeCharDevice == 0 {
		return restoreToDevice(ctx, env, v, p, d, path, o.skipBad)
	}
	if err == nil && !st.Mode().IsRegular() {
		return 0, fmt.Errorf("%s: not a regular file, directory or block device", path)
	}
	if err == nil && !force {
		return 0, fmt.Errorf("%s: already exists (use --force to replace it)", path)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	var damage error // ranges skipped: the file is kept, the error returned
	err = replaceFile(path, func(f *os.File) error {
		if err := f.Truncate(d.Size); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		bar := env.newProgress("restore", false)
		defer bar.done()
		err := v.Restore(ctx, p, d.Name, f, snapshot.RestoreOptions{Progress: bar.update, SkipDamaged: o.skipBad})
		var dr *snapshot.DamagedRestore
		if errors.As(err, &dr) {
			damage, err = err, nil
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	return d.Allocated, damage
}

func restoreToDevice(ctx context.Context, env *cmdEnv, v *snapshot.Vault, p *snapshot.Point, d *snapshot.Disk, path string, skipBad bool) (int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	if size < d.Size {
		return 0, fmt.Errorf("%w: %s holds %s, disk %s of %s needs %s", snapshot.ErrTargetTooSmall,
			path, bytesIEC(size), d.Name, p.Name(), bytesIEC(d.Size))
	}
	bar := env.newProgress("restore", false)
	err = v.Restore(ctx, p, d.Name, f, snapshot.RestoreOptions{WriteZeros: true, Progress: bar.update, SkipDamaged: skipBad})
	bar.done()
	var dr *snapshot.DamagedRestore
	if err != nil && !errors.As(err, &dr) {
		return 0, err
	}
	if serr := f.Sync(); serr != nil {
		return 0, serr
	}
	return d.Size, err
}
