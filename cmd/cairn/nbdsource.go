package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/cairn-backup/cairn/image"
	"github.com/cairn-backup/cairn/image/nbd"
	"github.com/cairn-backup/cairn/snapshot"
)

// An NBD source is a disk read from an NBD server (qemu-nbd,
// qemu-storage-daemon, QEMU, libvirt's pull-mode backup): an NBD URI,
// plus two query parameters of cairn's own that the URI given to the
// server leaves out:
//
//	bitmap=NAME      read only what the dirty bitmap NAME (the export's
//	                 qemu:dirty-bitmap:NAME) reports changed, when the
//	                 disk's latest point recorded checkpoint NAME
//	checkpoint=NAME  the bitmap NAME began recording when the exported
//	                 state was taken: recorded in the new point, so the
//	                 next backup may read from bitmap=NAME

// nbdDialTimeout bounds connecting to an NBD server and its handshake.
const nbdDialTimeout = 30 * time.Second

// nbdSchemes are the schemes of NBD URIs.
var nbdSchemes = []string{"nbd://", "nbds://", "nbd+unix://", "nbds+unix://"}

// isNBD reports whether a source argument is an NBD URI.
func isNBD(s string) bool {
	l := strings.ToLower(s)
	for _, p := range nbdSchemes {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}

// nbdSpec is an NBD source taken apart.
type nbdSpec struct {
	URI        string // the NBD URI without cairn's parameters
	Export     string
	Bitmap     string
	Checkpoint string
}

// maxBitmapName is QEMU's limit on a dirty bitmap's name.
const maxBitmapName = 1023

// parseNBDSource splits cairn's parameters from an NBD source URI and
// checks the rest as an NBD URI. Errors do not name s: callers do.
func parseNBDSource(s string) (nbdSpec, error) {
	var spec nbdSpec
	base, query, _ := strings.Cut(s, "?")
	frag := ""
	if i := strings.IndexByte(query, '#'); i >= 0 {
		query, frag = query[:i], query[i:]
	}
	var keep []string
	for _, kv := range strings.Split(query, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return spec, fmt.Errorf("%w: %v", nbd.ErrBadURI, err)
		}
		var dst *string
		switch key {
		case "bitmap":
			dst = &spec.Bitmap
		case "checkpoint":
			dst = &spec.Checkpoint
		default:
			keep = append(keep, kv)
			continue
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return spec, fmt.Errorf("%w: %s: %v", nbd.ErrBadURI, key, err)
		}
		if *dst != "" {
			return spec, fmt.Errorf("%s= is given twice", key)
		}
		if err := checkBitmapName(val); err != nil {
			return spec, fmt.Errorf("%s=%q: %v", key, val, err)
		}
		*dst = val
	}
	spec.URI = base
	if len(keep) > 0 {
		spec.URI += "?" + strings.Join(keep, "&")
	}
	spec.URI += frag
	u, err := nbd.ParseURI(spec.URI)
	if err != nil {
		return spec, err
	}
	spec.Export = u.Export
	return spec, nil
}

// checkBitmapName refuses names QEMU would not have made.
func checkBitmapName(name string) error {
	if name == "" {
		return fmt.Errorf("a bitmap needs a name")
	}
	if len(name) > maxBitmapName {
		return fmt.Errorf("a bitmap name is at most %d bytes", maxBitmapName)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Errorf("a bitmap name has no control characters")
		}
	}
	return nil
}

// nbdSource is an NBD export read as a backup source. The connection
// knows the size the server gave at its start; CurrentSize asks again.
type nbdSource struct {
	*nbd.Client
	uri string
}

// CurrentSize asks the server for the export's size over a second,
// short connection, so a backup notices an export resized while it was
// read. Only a server that allows several connections at once says so
// (NBD_FLAG_CAN_MULTI_CONN, as QEMU's read-only exports do); qemu-nbd
// without -e would hold the second connection until the first ends. A
// server that cannot be asked, or that has gone, cannot tell: the size
// at the start stands (a shrunk export fails the reads past its end).
func (s *nbdSource) CurrentSize() (int64, error) {
	if s.Flags()&nbd.FlagCanMultiConn == 0 {
		return s.Size(), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := nbd.Dial(ctx, s.uri, nbd.ClientOptions{MaxInFlight: 1, CloseTimeout: time.Second})
	if err != nil {
		return s.Size(), nil
	}
	defer c.Close()
	return c.Size(), nil
}

var _ snapshot.CurrentSizer = (*nbdSource)(nil)

// openNBDSource connects to the export an NBD source names, asking for
// base:allocation (holes are skipped) and the dirty bitmap when one is
// given. A bitmap the server does not offer leaves Dirty nil: the backup
// then reads the disk in full and says so.
func openNBDSource(ctx context.Context, d backupDisk, format string) (openedSource, error) {
	spec, err := parseNBDSource(d.Path)
	if err != nil {
		return openedSource{}, fmt.Errorf("source %s: %w", d.Path, err)
	}
	if err := snapshot.CheckName("disk", d.Name); err != nil {
		return openedSource{}, fmt.Errorf("source %s: %w (name it with DISK=URI)", spec.URI, err)
	}
	if format == image.FormatQcow2 {
		return openedSource{}, usagef("source %s: an NBD export is read as the disk it serves; --source-format qcow2 is for files", spec.URI)
	}
	contexts := []string{nbd.ContextAllocation}
	bitmap := ""
	if spec.Bitmap != "" {
		bitmap = nbd.ContextDirtyBitmapPrefix + spec.Bitmap
		contexts = append(contexts, bitmap)
	}
	dctx, cancel := context.WithTimeout(ctx, nbdDialTimeout)
	defer cancel()
	c, err := nbd.Dial(dctx, spec.URI, nbd.ClientOptions{MetaContexts: contexts})
	if err != nil {
		return openedSource{}, fmt.Errorf("source %s: %w", spec.URI, err)
	}
	if format == "" {
		// A qcow2 file served as raw bytes would back up the container.
		if f, err := image.DetectFormat(c); err != nil || f != image.FormatRaw {
			c.Close()
			if err == nil {
				err = fmt.Errorf("the export holds a %s image, not a disk: serve it with its format (qemu-nbd -f %s), or back it up with --source-format raw", f, f)
			}
			return openedSource{}, fmt.Errorf("source %s: %w", spec.URI, err)
		}
	}
	ds := snapshot.DiskSource{Name: d.Name, Path: spec.URI, Src: &nbdSource{Client: c, uri: spec.URI},
		Bitmap: spec.Bitmap, Checkpoint: spec.Checkpoint}
	if bitmap != "" && c.HasMetaContext(bitmap) {
		ds.Dirty = func(ctx context.Context, fn func(start, end int64) error) error {
			return c.WalkExtents(ctx, bitmap, 0, c.Size(), func(e nbd.Extent) error {
				if e.Flags&nbd.StateDirty == 0 {
					return nil
				}
				return fn(e.Off, e.End())
			})
		}
	}
	return openedSource{DiskSource: ds, format: "nbd", closer: c}, nil
}

// describe says what a source is read as, for the job's log.
func (s openedSource) describe() string {
	switch {
	case s.format != "nbd":
		return s.format
	case s.Bitmap != "" && s.Dirty == nil:
		return "nbd; the server does not offer bitmap " + s.Bitmap
	case s.Bitmap != "":
		return "nbd, bitmap " + s.Bitmap
	}
	return "nbd"
}
