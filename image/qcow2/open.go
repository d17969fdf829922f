package qcow2

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cairn-backup/cairn/image"
	"golang.org/x/sys/unix"
)

// maxChain bounds the backing chain, which also stops loops.
const maxChain = 64

// Open opens the qcow2 image at path and its backing chain. Relative
// backing file names are taken relative to the directory of the image that
// names them, as qemu does. Backing images may be raw or qcow2.
func Open(path string) (*Image, error) {
	return open(path, 0)
}

func open(path string, depth int) (*Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("qcow2: %w", err)
	}
	im, err := openFile(f, path, depth)
	if err != nil {
		f.Close()
		return nil, err
	}
	return im, nil
}

func openFile(f *os.File, path string, depth int) (*Image, error) {
	if depth > maxChain {
		return nil, errf(path, ErrCorrupt, "backing chain longer than %d images (a loop?)", maxChain)
	}
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("qcow2: %w", err)
	}
	h, err := readHeader(f, st.Size(), path)
	if err != nil {
		return nil, err
	}
	var backing image.Source
	var closeBacking func() error
	if h.backingFile != "" {
		b, err := openBacking(path, h, depth)
		if err != nil {
			return nil, err
		}
		backing, closeBacking = b, b.(interface{ Close() error }).Close
	}
	im, err := newImage(f, st.Size(), h, backing, path)
	if err != nil {
		if closeBacking != nil {
			closeBacking()
		}
		return nil, err
	}
	im.closers = append(im.closers, f)
	if closeBacking != nil {
		im.closers = append(im.closers, closerFunc(closeBacking))
	}
	return im, nil
}

type closerFunc func() error

func (c closerFunc) Close() error { return c() }

func openBacking(path string, h *header, depth int) (image.Source, error) {
	name := h.backingFile
	if !filepath.IsAbs(name) {
		name = filepath.Join(filepath.Dir(path), name)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, errf(path, ErrUnsupported, "open backing file %q: %v", h.backingFile, err)
	}
	format := h.backingFormat
	if format == "" {
		if format, err = image.DetectFormat(f); err != nil {
			f.Close()
			return nil, errf(path, ErrUnsupported, "backing file %q: %v", name, err)
		}
	}
	switch format {
	case image.FormatQcow2:
		b, err := openFile(f, name, depth+1)
		if err != nil {
			f.Close()
			return nil, err
		}
		return b, nil
	case image.FormatRaw:
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("qcow2: backing file: %w", err)
		}
		return &rawFile{f: f, size: st.Size()}, nil
	}
	f.Close()
	return nil, errf(path, ErrUnsupported, "backing file %q has format %q (only raw and qcow2)", name, format)
}

// rawFile is a raw backing file; holes are found with SEEK_DATA/SEEK_HOLE.
type rawFile struct {
	f    *os.File
	size int64
}

func (r *rawFile) ReadAt(p []byte, off int64) (int, error) { return r.f.ReadAt(p, off) }
func (r *rawFile) Size() int64                             { return r.size }
func (r *rawFile) Close() error                            { return r.f.Close() }

// NextData uses lseek, which moves the shared file offset; ReadAt uses
// pread and does not care.
func (r *rawFile) NextData(off int64) (int64, int64, error) {
	if off >= r.size {
		return r.size, r.size, nil
	}
	start, err := r.f.Seek(off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return r.size, r.size, nil
	}
	if err != nil {
		return off, r.size, nil // no hole support: all data
	}
	end, err := r.f.Seek(start, unix.SEEK_HOLE)
	if err != nil {
		end = r.size
	}
	return min(start, r.size), min(end, r.size), nil
}
