package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/fs/guest/volume"
	"github.com/cairn-backup/cairn/snapshot"
)

func newCatCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:      "cat",
		Usage:     "write one file of a point to stdout, without mounting it",
		ArgsUsage: "POINT:PATH",
		Description: "PATH is DISK/partN/FILE on a partitioned disk, DISK/FILE on a bare filesystem (a leading /\n" +
			"is allowed); DISK.raw is the whole disk and DISK/partN.raw a partition, as raw bytes.\n\n" +
			"Examples:\n" +
			"  cairn cat web01@latest:vda/part1/etc/hostname\n" +
			"  cairn cat web01@latest:/vda/part1/etc/fstab\n" +
			"  cairn cat db01@latest:vdb/var/log/syslog | tail",
		Action: func(c *cli.Context) error {
			if err := args(c, 1, 1, "POINT:PATH"); err != nil {
				return err
			}
			ref := c.Args().First()
			return env.stream(c, http.MethodGet, "/cat", url.Values{"ref": {ref}}, nil, env.stdout, nil, nil,
				func(v *snapshot.Vault, w io.Writer, _ *jobContext) (any, error) {
					return nil, runCat(c.Context, v, ref, w)
				})
		},
	}
}

// catChunk bounds memory whatever the file's size.
const catChunk = 1 << 20

// runCat writes the file ref names to w: GET /v1/cat.
func runCat(ctx context.Context, v *snapshot.Vault, ref string, w io.Writer) error {
	g, err := parseGuestRef(v, ref)
	if err != nil {
		return err
	}
	defer g.release()
	if g.disk == "" || !strings.Contains(ref, ":") {
		return usagef("usage: cairn cat POINT:PATH (e.g. %s:vda/part1/etc/hostname)", g.point.Name())
	}
	if name, ok := strings.CutSuffix(g.disk, ".raw"); ok && g.path == "" {
		r, err := v.OpenDisk(g.point, name)
		if err != nil {
			return err
		}
		return copyOut(ctx, w, io.NewSectionReader(r, 0, r.Size()))
	}
	_, d, err := openVolumes(v, g.point, g.disk)
	if err != nil {
		return err
	}
	if name, ok := strings.CutSuffix(g.path, ".raw"); ok && !d.Bare && !strings.Contains(name, "/") {
		if vol := d.Volume(name); vol != nil {
			return copyOut(ctx, w, vol.Reader())
		}
	}
	vol, fsys, ino, err := d.Resolve(g.path, true)
	if err != nil {
		if vol != nil && errors.Is(err, volume.ErrNoFilesystem) {
			return noFilesystem(ref, vol)
		}
		return guestErr(ref, err)
	}
	a, err := fsys.Stat(ino)
	if err != nil {
		return guestErr(ref, err)
	}
	switch a.Mode & syscall.S_IFMT {
	case syscall.S_IFREG:
	case syscall.S_IFDIR:
		return fmt.Errorf("%s: is a directory", ref)
	default:
		return fmt.Errorf("%s: not a regular file (%s)", ref, typeNames[a.Mode&syscall.S_IFMT])
	}
	buf := make([]byte, catChunk)
	for off := int64(0); off < int64(a.Size); {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := fsys.ReadAt(ino, buf[:min(int64(len(buf)), int64(a.Size)-off)], off)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			off += int64(n)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return guestErr(ref, err)
		}
		if n == 0 {
			return guestErr(ref, io.ErrNoProgress)
		}
	}
	return nil
}

// copyOut streams r to w in bounded chunks, stopping when ctx ends.
func copyOut(ctx context.Context, w io.Writer, r io.Reader) error {
	buf := make([]byte, catChunk)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
