package fat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/fs/guest"
)

// damaged builds a FAT16 volume, lets damage change its bytes, and
// returns the volume reopened from them.
func damaged(t *testing.T, damage func(img []byte, fs *FS)) (*FS, error) {
	t.Helper()
	p, _ := makeImage(t, "16", 20000, false)
	img, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	damage(img, openImage(t, p))
	return Open(bytes.NewReader(img), int64(len(img)))
}

// cluster returns the first cluster recorded in the entry of inode ino.
func cluster(img []byte, ino uint64) uint16 { return binary.LittleEndian.Uint16(img[ino+26:]) }

// setFAT16 sets the entry of cluster c in the first FAT.
func setFAT16(img []byte, fs *FS, c, v uint16) {
	binary.LittleEndian.PutUint16(img[fs.l.fatStart+2*int64(c):], v)
}

// within fails the test when f runs longer than a few seconds: damage
// must never make a reader loop.
func within(t *testing.T, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("reader hangs on damaged volume")
		return nil
	}
}

func readAll(fs *FS, path string) error {
	ino := fs.Root()
	for _, name := range bytes.Split([]byte(path), []byte("/")) {
		next, err := fs.Lookup(ino, string(name))
		if err != nil {
			return err
		}
		ino = next
	}
	if _, err := fs.Stat(ino); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	_, err := fs.ReadAt(ino, buf, 0)
	if err == io.EOF {
		err = nil
	}
	return err
}

func TestDamagedFileChains(t *testing.T) {
	for _, tc := range []struct {
		name string
		fix  func(img []byte, fs *FS, c uint16)
	}{
		{"loop", func(img []byte, fs *FS, c uint16) { setFAT16(img, fs, c+3, c) }},
		{"self loop", func(img []byte, fs *FS, c uint16) { setFAT16(img, fs, c, c) }},
		{"out of range", func(img []byte, fs *FS, c uint16) { setFAT16(img, fs, c+1, 0xFFF0) }},
		{"free cluster", func(img []byte, fs *FS, c uint16) { setFAT16(img, fs, c+1, 0) }},
		{"bad cluster", func(img []byte, fs *FS, c uint16) { setFAT16(img, fs, c+1, 0xFFF7) }},
		{"chain too short", func(img []byte, fs *FS, c uint16) { setFAT16(img, fs, c+1, 0xFFFF) }},
		{"first cluster out of range", func(img []byte, fs *FS, c uint16) {
			binary.LittleEndian.PutUint16(img[walk(t, fs, "clusters.bin")+26:], 0xFFF0)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, err := damaged(t, func(img []byte, fs *FS) {
				ino := walk(t, fs, "clusters.bin")
				tc.fix(img, fs, cluster(img, ino))
			})
			if err != nil {
				t.Fatal(err)
			}
			err = within(t, func() error { return readAll(fs, "clusters.bin") })
			if !errors.Is(err, guest.ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			// The rest of the volume still reads.
			if err := readAll(fs, "a/b/sibling.dat"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDamagedDirectories(t *testing.T) {
	for _, tc := range []struct {
		name string
		fix  func(img []byte, fs *FS, c uint16)
	}{
		{"loop", func(img []byte, fs *FS, c uint16) { setFAT16(img, fs, c, c) }},
		{"out of range", func(img []byte, fs *FS, c uint16) { setFAT16(img, fs, c, 0xFFF0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, err := damaged(t, func(img []byte, fs *FS) {
				// "many" holds 150 long names: several clusters.
				tc.fix(img, fs, cluster(img, walk(t, fs, "many")))
			})
			if err != nil {
				t.Fatal(err)
			}
			err = within(t, func() error { _, err := fs.ReadDir(walk(t, fs, "many")); return err })
			if !errors.Is(err, guest.ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestDamagedBootSector(t *testing.T) {
	for _, tc := range []struct {
		name string
		off  int
		b    []byte
		want error
	}{
		{"bytes per sector", 11, []byte{0, 3}, guest.ErrCorrupt},
		{"sectors per cluster", 13, []byte{3}, guest.ErrCorrupt},
		{"no reserved sectors", 14, []byte{0, 0}, guest.ErrCorrupt},
		{"no FAT size", 22, []byte{0, 0}, guest.ErrCorrupt},
		{"FAT too small", 22, []byte{1, 0}, guest.ErrCorrupt},
		{"FAT32 fields on FAT16", 17, []byte{0, 0}, guest.ErrCorrupt},
		{"not FAT", 0, make([]byte, 90), guest.ErrUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := damaged(t, func(img []byte, fs *FS) { copy(img[tc.off:], tc.b) })
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestTruncatedVolume(t *testing.T) {
	p, _ := makeImage(t, "16", 20000, false)
	img, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	fs := openImage(t, p)
	ino := walk(t, fs, "clusters.bin")
	end := fs.l.clusterOffset(uint32(cluster(img, ino))) + 100
	short, err := Open(bytes.NewReader(img[:end]), end)
	if err != nil {
		t.Fatal(err)
	}
	if err := readAll(short, "clusters.bin"); !errors.Is(err, guest.ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
}

func TestProbe(t *testing.T) {
	p, _ := makeImage(t, "12", 2048, false)
	img, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !Probe(bytes.NewReader(img), int64(len(img))) {
		t.Fatal("Probe rejects a FAT12 volume")
	}
	if Probe(bytes.NewReader(make([]byte, 4096)), 4096) {
		t.Fatal("Probe accepts zeros")
	}
	if _, err := Open(bytes.NewReader(make([]byte, 100)), 100); !errors.Is(err, guest.ErrUnknown) {
		t.Fatalf("tiny volume: %v", err)
	}
}
