package main

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// extent is a data range [Start, End) of a sparse file.
type extent struct{ Start, End int64 }

// dataExtents walks f with SEEK_DATA/SEEK_HOLE.
func dataExtents(f *os.File) ([]extent, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	fd := int(f.Fd())
	var out []extent
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			return nil, err
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return nil, err
		}
		out = append(out, extent{start, end})
		off = end
	}
	return out, nil
}
