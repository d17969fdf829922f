package main

import (
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

// openedSource is a backup source ready to read.
type openedSource struct {
	snapshot.DiskSource
	format string
	closer io.Closer
}

// openSources opens every SOURCE argument ("PATH" or "DISK=PATH"). On
// error, the sources opened so far are closed.
func (e *cmdEnv) openSources(argv []string, format string) ([]openedSource, error) {
	var out []openedSource
	for _, a := range argv {
		s, err := e.openSource(a, format)
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

func (e *cmdEnv) openSource(arg, format string) (openedSource, error) {
	name, path, explicit := strings.Cut(arg, "=")
	if !explicit {
		path = arg
		base := filepath.Base(path)
		name = strings.TrimSuffix(base, filepath.Ext(base))
	}
	if path == "" {
		return openedSource{}, fmt.Errorf("source %q: no path", arg)
	}
	if err := snapshot.CheckName("disk", name); err != nil {
		return openedSource{}, fmt.Errorf("source %s: %w (name it with DISK=PATH)", path, err)
	}
	full := e.path(path)
	raw, err := image.OpenRaw(full)
	if err != nil {
		return openedSource{}, describeOpenError(path, err)
	}
	if format == "" {
		if format, err = image.DetectFormat(raw); err != nil {
			raw.Close()
			return openedSource{}, fmt.Errorf("%s: %w", path, err)
		}
	}
	ds := snapshot.DiskSource{Name: name, Path: full}
	switch format {
	case image.FormatRaw:
		ds.Src = raw
		return openedSource{DiskSource: ds, format: format, closer: raw}, nil
	case image.FormatQcow2:
		raw.Close()
		q, err := qcow2.Open(full)
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
