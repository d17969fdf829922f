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

// restoreRequest is a restore job's params.
type restoreRequest struct {
	Point       string `json:"point"`
	Disk        string `json:"disk,omitempty"` // "": every disk (a directory target) or the only one
	Target      string `json:"target"`         // absolute: a file, a block device or a directory
	Force       bool   `json:"force,omitempty"`
	SkipDamaged bool   `json:"skip_damaged,omitempty"`
}

func (r restoreRequest) target() string { return r.Point }

func (r *restoreRequest) check() error {
	switch {
	case r.Point == "":
		return usagef("usage: cairn restore POINT [--disk DISK] TARGET")
	case !filepath.IsAbs(r.Target):
		return usagef("target %q: the path must be absolute", r.Target)
	}
	return nil
}

func newRestoreCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "restore",
		Usage: "write a point's disk to a file or block device",
		Description: "TARGET is a new file (written sparse: zero blocks become holes), an existing file with\n" +
			"--force, a block device at least as large as the disk, or a directory, which receives\n" +
			"DISK.raw for each disk of the point (or the one chosen with --disk).\n" +
			"A file target appears under its name only once it is complete, with mode 0600. A target\n" +
			"inside the vault is refused.\n" +
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
			req := restoreRequest{Point: c.Args().Get(0), Disk: c.String("disk"), Target: env.path(c.Args().Get(1)),
				Force: c.Bool("force"), SkipDamaged: c.Bool("skip-damaged")}
			var results []restoreResult
			return env.job(c, "restore", req, env.newProgress("restore", false), &results,
				func() error { return renderRestore(env, results, c.Bool("json")) })
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

// runRestore writes the request's disks to its target. With
// SkipDamaged, a damaged point restores what can be read: the results
// list the damaged ranges, and the error says so.
func runRestore(ctx context.Context, v *snapshot.Vault, r restoreRequest, jc *jobContext) ([]restoreResult, error) {
	p, err := v.Resolve(r.Point)
	if err != nil {
		return nil, err
	}
	jc.setTarget(p.Name())
	defer v.Hold(p)() // a prune and gc meanwhile do not pull blocks from under us
	disks := p.Disks
	if r.Disk != "" {
		d := p.Disk(r.Disk)
		if d == nil {
			_, err := v.OpenDisk(p, r.Disk) // for its error message
			return nil, err
		}
		disks = []snapshot.Disk{*d}
	}
	targets := map[string]string{} // disk → path
	st, err := os.Stat(r.Target)
	switch {
	case err == nil && st.IsDir():
		for _, d := range disks {
			targets[d.Name] = filepath.Join(r.Target, d.Name+".raw")
		}
	case len(disks) > 1:
		_, err := v.OpenDisk(p, "")
		return nil, err
	default:
		targets[disks[0].Name] = r.Target
	}
	for _, d := range disks {
		if err := checkOutsideVault(v.Dir(), targets[d.Name]); err != nil {
			return nil, err
		}
	}
	// One bar for every disk: bytes of all of them.
	var total, before, written int64
	for _, d := range disks {
		total += d.Size
	}
	results := []restoreResult{}
	var damaged []string
	for _, d := range disks {
		start := time.Now()
		progress := func(done, _ int64) { jc.progress(before+done, total) }
		n, err := restoreDisk(ctx, v, p, &d, targets[d.Name], r, progress)
		var dr *snapshot.DamagedRestore
		if errors.As(err, &dr) {
			damaged = append(damaged, dr.Error())
			err = nil
		}
		if err != nil {
			return nil, err
		}
		before += d.Size
		written += n
		res := restoreResult{Point: p.Name(), Disk: d.Name, Target: targets[d.Name],
			Size: d.Size, Written: n, Seconds: seconds(time.Since(start))}
		if dr != nil {
			res.Damaged = &dr.Damage
		}
		jc.logf("restored disk %s to %s", d.Name, res.Target)
		results = append(results, res)
	}
	jc.setBytes("written", written)
	if len(damaged) > 0 {
		return results, fmt.Errorf("restored all but damaged ranges, written as zeros: %s", strings.Join(damaged, "; "))
	}
	return results, nil
}

func renderRestore(env *cmdEnv, results []restoreResult, asJSON bool) error {
	if asJSON {
		return writeJSON(env.stdout, results)
	}
	for _, r := range results {
		env.summaryf("restored %s disk %s to %s (%s) in %s", r.Point, r.Disk, r.Target,
			bytesIEC(r.Size), shortDuration(secondsDuration(r.Seconds)))
	}
	return nil
}

// restoreDisk writes one disk to path: a block device in place, a file
// through replaceFile, so no half-written file ever carries its name.
func restoreDisk(ctx context.Context, v *snapshot.Vault, p *snapshot.Point, d *snapshot.Disk, path string, r restoreRequest,
	progress func(done, total int64)) (int64, error) {
	force := r.Force
	st, err := os.Stat(path)
	if err == nil && st.Mode()&fs.ModeDevice != 0 && st.Mode()&fs.ModeCharDevice == 0 {
		return restoreToDevice(ctx, v, p, d, path, r.SkipDamaged, progress)
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
		err := v.Restore(ctx, p, d.Name, f, snapshot.RestoreOptions{Progress: progress, SkipDamaged: r.SkipDamaged})
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

func restoreToDevice(ctx context.Context, v *snapshot.Vault, p *snapshot.Point, d *snapshot.Disk, path string, skipBad bool,
	progress func(done, total int64)) (int64, error) {
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
	err = v.Restore(ctx, p, d.Name, f, snapshot.RestoreOptions{WriteZeros: true, Progress: progress, SkipDamaged: skipBad})
	var dr *snapshot.DamagedRestore
	if err != nil && !errors.As(err, &dr) {
		return 0, err
	}
	if serr := f.Sync(); serr != nil {
		return 0, serr
	}
	return d.Size, err
}
