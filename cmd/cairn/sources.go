package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/cairn-backup/cairn/image"
	"github.com/cairn-backup/cairn/image/qcow2"
	"github.com/cairn-backup/cairn/snapshot"
)

// backupDisk is one source of a backup: the disk's name in the point and
// the file or device it is read from, an absolute path.
type backupDisk struct {
	Name string `json:"name"`
	Path string `json:"path"`
}

// sourceArgs reads the SOURCE arguments of backup ("PATH" or
// "DISK=PATH", PATH a file, a device or an NBD URI): a disk is named
// after its file without the extension, or an NBD export's name, unless
// DISK= names it. Paths are made absolute against the working
// directory, so the point records them so wherever the backup runs.
func (e *cmdEnv) sourceArgs(argv []string) ([]backupDisk, error) {
	var out []backupDisk
	for _, a := range argv {
		if isNBD(a) {
			spec, err := parseNBDSource(a)
			if err != nil {
				return nil, usagef("source %s: %v", a, err)
			}
			out = append(out, backupDisk{Name: spec.Export, Path: a})
			continue
		}
		name, path, explicit := strings.Cut(a, "=")
		if explicit && isNBD(path) {
			if _, err := parseNBDSource(path); err != nil {
				return nil, usagef("source %s: %v", path, err)
			}
			out = append(out, backupDisk{Name: name, Path: path})
			continue
		}
		if !explicit {
			path = a
			base := filepath.Base(path)
			name = strings.TrimSuffix(base, filepath.Ext(base))
		}
		if path == "" {
			return nil, fmt.Errorf("source %q: no path", a)
		}
		out = append(out, backupDisk{Name: name, Path: e.path(path)})
	}
	return out, nil
}

// openedSource is a backup source ready to read.
type openedSource struct {
	snapshot.DiskSource
	format string
	closer io.Closer
}

// openSources opens every source. On error, the sources opened so far
// are closed.
func openSources(ctx context.Context, disks []backupDisk, format string) ([]openedSource, error) {
	var out []openedSource
	for _, d := range disks {
		s, err := openSource(ctx, d, format)
		if err != nil {
			closeSources(out)
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func closeSources(s []openedSource) {
	for _, o := range s {
		o.closer.Close()
	}
}

func openSource(ctx context.Context, d backupDisk, format string) (openedSource, error) {
	if isNBD(d.Path) {
		return openNBDSource(ctx, d, format)
	}
	path := d.Path
	if err := snapshot.CheckName("disk", d.Name); err != nil {
		return openedSource{}, fmt.Errorf("source %s: %w (name it with DISK=PATH)", path, err)
	}
	raw, err := image.OpenRaw(path)
	if err != nil {
		return openedSource{}, describeOpenError(path, err)
	}
	if format == "" {
		if format, err = image.DetectFormat(raw); err != nil {
			raw.Close()
			return openedSource{}, fmt.Errorf("%s: %w", path, err)
		}
	}
	ds := snapshot.DiskSource{Name: d.Name, Path: path}
	switch format {
	case image.FormatRaw:
		ds.Src = raw
		return openedSource{DiskSource: ds, format: format, closer: raw}, nil
	case image.FormatQcow2:
		raw.Close()
		q, err := qcow2.Open(path)
		if err != nil {
			return openedSource{}, fmt.Errorf("%s: %w", path, err)
		}
		ds.Src = q
		return openedSource{DiskSource: ds, format: format, closer: q}, nil
	}
	raw.Close()
	return openedSource{}, usagef("--source-format %q: want raw or qcow2", format)
}

func describeOpenError(path string, err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s: no such file or device", path)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("%s: permission denied", path)
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %v", path, pe.Err)
	}
	return err
}
