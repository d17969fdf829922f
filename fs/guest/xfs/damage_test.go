package xfs

import (
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"
)

// walk visits the tree breadth first within limits and returns the first
// error; used on damaged images, where an error is fine and a panic or a
// hang is not.
func walk(fsys *FS, maxInodes int, maxRead int) error {
	var first error
	note := func(err error) {
		if err != nil && first == nil && !errors.Is(err, io.EOF) {
			first = err
		}
	}
	queue := []uint64{fsys.Root()}
	seen := map[uint64]bool{}
	buf := make([]byte, 8192)
	for len(queue) > 0 && len(seen) < maxInodes {
		ino := queue[0]
		queue = queue[1:]
		if seen[ino] {
			continue
		}
		seen[ino] = true
		a, err := fsys.Stat(ino)
		note(err)
		if err != nil {
			continue
		}
		names, err := fsys.ListXattr(ino)
		note(err)
		for _, n := range names {
			_, err := fsys.GetXattr(ino, n)
			note(err)
		}
		switch a.Mode & syscall.S_IFMT {
		case syscall.S_IFDIR:
			ents, err := fsys.ReadDir(ino)
			note(err)
			for _, e := range ents {
				_, err := fsys.Lookup(ino, e.Name)
				note(err)
				queue = append(queue, e.Ino)
			}
		case syscall.S_IFLNK:
			_, err := fsys.Readlink(ino)
			note(err)
		case syscall.S_IFREG:
			for off := int64(0); off < int64(maxRead) && uint64(off) < a.Size; off += int64(len(buf)) {
				_, err := fsys.ReadAt(ino, buf, off)
				note(err)
			}
			if a.Size > 4096 {
				_, err := fsys.ReadAt(ino, buf[:100], int64(a.Size)-50)
				note(err)
			}
			exts, err := fsys.MapFile(nil, ino, 0, 8<<20)
			note(err)
			for _, e := range exts {
				if e.Off < 0 || e.Len <= 0 || e.Off+e.Len > fsys.size {
					note(fmt.Errorf("extent %+v outside the volume", e))
				}
			}
			for off, n := int64(0), 0; off < int64(a.Size) && n < 64; n++ {
				_, end, err := fsys.NextData(ino, off)
				note(err)
				if err != nil || end <= off {
					break
				}
				off = end
			}
		}
	}
	return first
}

// inTime fails the test when f does not return within a deadline.
func inTime(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("hang: no answer after 20s")
	}
}
