package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/image/qcow2"
	"github.com/cairn-backup/cairn/image/stream"
	"github.com/cairn-backup/cairn/snapshot"
)

type exportOptions struct {
	point    string
	disk     string
	format   string // raw or qcow2
	compress string // as given; "" = the format's default
	level    int
	output   string // a path, or "-" for stdout
	force    bool
	json     bool
}

// exportCodecs lists, per format, the accepted --compress values, the
// default first.
var exportCodecs = map[string][]string{
	"raw":   {"none", stream.Zstd, stream.LZ4, stream.Gzip},
	"qcow2": {"zlib", "zstd", "none"},
}

// levelRange is the --level range of each codec.
var levelRange = map[string][2]int{"zstd": {1, 22}, "zlib": {1, 9}, "lz4": {1, 9}, "gzip": {1, 9}}

const exportUsage = "POINT [--disk DISK] --format raw|qcow2 [--compress zstd|zlib|lz4|gzip|none] [--level N] -o FILE|-"

func newExportCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "export",
		Usage: "write a point's disk as a raw or qcow2 image, compressed",
		Description: "raw with --compress none (the default for raw) writes a sparse file: zero blocks become holes.\n" +
			"raw with zstd, lz4 or gzip writes one stream that `zstd -d`, `lz4 -d` or `gzip -d` turns back\n" +
			"into the exact disk. qcow2 (version 3, 64 KiB clusters) compresses clusters with zlib (the\n" +
			"default, readable by every qemu) or zstd, or stores them plain with none; zero regions stay\n" +
			"unallocated.\n\n" +
			"-o - writes the image to stdout, qcow2 included: with --compress none it streams, tables first;\n" +
			"compressed qcow2 is staged in a temporary file first, which needs free space in $TMPDIR (the\n" +
			"daemon's when one runs). With -o -, --json prints to stderr.\n" +
			"A file appears under its name only once it is complete; --force replaces an existing one.\n" +
			"Every block is verified as it is read: a damaged block stops the export with an error naming\n" +
			"its offset.",
		ArgsUsage: "POINT",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "disk", Usage: "the disk to export, for points with several disks"},
			&cli.StringFlag{Name: "format", Usage: "raw or qcow2"},
			&cli.StringFlag{Name: "compress", Usage: "raw: none (default), zstd, lz4, gzip; qcow2: zlib (default), zstd, none"},
			&cli.IntFlag{Name: "level", Usage: "compression level: zstd 1-22; zlib, gzip and lz4 1-9", DefaultText: "the codec's"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "the image file, or - for stdout"},
			&cli.BoolFlag{Name: "force", Usage: "replace an existing output file"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := args(c, 1, 1, exportUsage); err != nil {
				return err
			}
			o := exportOptions{point: c.Args().Get(0), disk: c.String("disk"), format: c.String("format"),
				compress: c.String("compress"), level: c.Int("level"), output: env.path(c.String("output")),
				force: c.Bool("force"), json: c.Bool("json")}
			if err := o.check(); err != nil {
				return err
			}
			return env.withVault(c, func(v *snapshot.Vault) error { return runExport(c.Context, env, v, o) })
		},
	}
}

// check validates the flags and fills in the default codec.
func (o *exportOptions) check() error {
	codecs, ok := exportCodecs[o.format]
	switch {
	case o.format == "":
		return usagef("--format is required: raw or qcow2 (usage: cairn export %s)", exportUsage)
	case !ok:
		return usagef("--format %q: want raw or qcow2", o.format)
	case o.output == "":
		return usagef("-o FILE or -o - (stdout) is required (usage: cairn export %s)", exportUsage)
	}
	if o.compress == "" {
		o.compress = codecs[0]
	}
	if !slices.Contains(codecs, o.compress) {
		return usagef("--compress %s does not go with --format %s (it takes %s)", o.compress, o.format, strings.Join(codecs, ", "))
	}
	if o.level != 0 {
		r, ok := levelRange[o.compress]
		if !ok {
			return usagef("--level needs compression (--compress is none)")
		}
		if o.level < r[0] || o.level > r[1] {
			return usagef("--level %d: %s takes %d to %d", o.level, o.compress, r[0], r[1])
		}
	}
	return nil
}

type exportResult struct {
	Point       string  `json:"point"`
	Disk        string  `json:"disk"`
	Format      string  `json:"format"`
	Compression string  `json:"compression"`
	Output      string  `json:"output"`
	VirtualSize int64   `json:"virtual_size"`
	FileSize    int64   `json:"file_size"`
	Ratio       float64 `json:"ratio"` // virtual size / file size
	Seconds     float64 `json:"duration_seconds"`
}

func runExport(ctx context.Context, env *cmdEnv, v *snapshot.Vault, o exportOptions) error {
	p, err := v.Resolve(o.point)
	if err != nil {
		return err
	}
	r, err := v.OpenDisk(p, o.disk)
	if err != nil {
		return err
	}
	d := r.Disk()
	start := time.Now()
	var n int64
	if o.output == "-" {
		n, err = exportTo(ctx, env, v, r, o, maxWrites{env.stdout, 1 << 20})
	} else {
		n, err = exportFile(ctx, env, v, r, o)
	}
	if err != nil {
		return err
	}
	res := exportResult{Point: p.Name(), Disk: d.Name, Format: o.format, Compression: o.compress, Output: o.output,
		VirtualSize: d.Size, FileSize: n, Ratio: ratio(d.Size, n), Seconds: time.Since(start).Seconds()}
	if o.format == "qcow2" {
		res.VirtualSize = (d.Size + 511) &^ 511
	}
	switch {
	case o.json && o.output == "-":
		return writeJSON(env.stderr, res)
	case o.json:
		return writeJSON(env.stdout, res)
	case env.terminal:
		fmt.Fprintf(env.stderr, "exported %s disk %s as %s/%s: %s in %s (%.2fx) in %s\n", res.Point, res.Disk,
			res.Format, res.Compression, bytesIEC(res.VirtualSize), bytesIEC(res.FileSize), res.Ratio,
			shortDuration(time.Since(start)))
	}
	return nil
}

// exportFile writes the image to the output file through replaceFile.
func exportFile(ctx context.Context, env *cmdEnv, v *snapshot.Vault, r *snapshot.DiskReader, o exportOptions) (int64, error) {
	path := o.output
	st, err := os.Stat(path)
	switch {
	case err == nil && !st.Mode().IsRegular():
		return 0, fmt.Errorf("%s: not a regular file", path)
	case err == nil && !o.force:
		return 0, fmt.Errorf("%s: already exists (use --force to replace it)", path)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return 0, err
	}
	var n int64
	err = replaceFile(path, func(f *os.File) error {
		n, err = exportTo(ctx, env, v, r, o, f)
		return err
	})
	return n, err
}

// exportTo writes the image to w, a new empty file or a stream, and
// returns its size in bytes.
func exportTo(ctx context.Context, env *cmdEnv, v *snapshot.Vault, r *snapshot.DiskReader, o exportOptions, w io.Writer) (int64, error) {
	size := r.Size()
	bar := env.newProgress("export", false)
	defer bar.done()
	if o.format == "qcow2" {
		// Two blocks ahead keep the vault reads off the compressing
		// workers' critical path.
		return qcow2.Write(ctx, w, r.Sequential(4), qcow2.WriterOptions{Compression: o.compress, Level: o.level},
			func(done int64) { bar.update(done, size) })
	}
	p, d := r.Point(), r.Disk()
	if f, ok := w.(*os.File); ok && o.compress == "none" {
		// A sparse file: stored blocks land in place, holes stay holes.
		if err := f.Truncate(size); err != nil {
			return 0, err
		}
		err := v.Blocks(ctx, p, d.Name, func(off int64, data []byte) error {
			if _, err := f.WriteAt(data, off); err != nil {
				return err
			}
			bar.update(off+int64(len(data)), size)
			return nil
		})
		return size, err
	}
	// A stream: raw bytes or frames, holes written out as zeros.
	var out interface {
		io.Writer
		Zeros(n int64) error
	}
	var sw *stream.Writer
	if o.compress == "none" {
		out = &zeroWriter{w: w}
	} else {
		var err error
		sw, err = stream.NewWriter(w, stream.Options{Codec: o.compress, Level: o.level})
		if err != nil {
			return 0, err
		}
		out = sw
	}
	pos := int64(0)
	err := v.Blocks(ctx, p, d.Name, func(off int64, data []byte) error {
		if err := out.Zeros(off - pos); err != nil {
			return err
		}
		if _, err := out.Write(data); err != nil {
			return err
		}
		pos = off + int64(len(data))
		bar.update(pos, size)
		return nil
	})
	if err == nil {
		err = out.Zeros(size - pos)
	}
	if sw == nil {
		return size, err
	}
	if cerr := sw.Close(); err == nil {
		err = cerr
	}
	return sw.Written(), err
}

// zeroWriter is an uncompressed stream that writes zeros for holes.
type zeroWriter struct {
	w     io.Writer
	zeros []byte
}

func (z *zeroWriter) Write(p []byte) (int, error) { return z.w.Write(p) }

func (z *zeroWriter) Zeros(n int64) error {
	if n > 0 && z.zeros == nil {
		z.zeros = make([]byte, 1<<20)
	}
	for n > 0 {
		k := min(n, int64(len(z.zeros)))
		if _, err := z.w.Write(z.zeros[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// maxWrites splits writes into pieces of at most max bytes: through the
// daemon, each write to stdout becomes one frame, and frames are bounded.
type maxWrites struct {
	w   io.Writer
	max int
}

func (m maxWrites) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k, err := m.w.Write(p[n:min(len(p), n+m.max)])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
