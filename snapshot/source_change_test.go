package snapshot

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// shrinkingSource is a MemSource that, after its first read, becomes
// what change makes of it: a file truncated or rewritten under a backup.
type shrinkingSource struct {
	MemSource
	once    sync.Once
	change  func(m *MemSource)
	mu      sync.Mutex
	current int64 // size now, as CurrentSize reports it
}

func (s *shrinkingSource) ReadAt(p []byte, off int64) (int, error) {
	s.once.Do(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.change(&s.MemSource)
		s.current = int64(len(s.Data))
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.MemSource.ReadAt(p, off)
}

// NextData answers as SEEK_DATA does on a file that shrank under an
// open handle whose size was taken at open (image.Raw): nothing past the
// new end is data.
func (s *shrinkingSource) NextData(off int64) (int64, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	start, end, err := s.MemSource.NextData(off)
	if start >= int64(len(s.Data)) {
		return s.Size(), s.Size(), err
	}
	return start, end, err
}

func (s *shrinkingSource) CurrentSize() (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current, nil
}

// Size is the size at open, as image.Raw reports it.
func (s *shrinkingSource) Size() int64 { return 4 << 20 }

func TestBackupFailsWhenSourceChanges(t *testing.T) {
	const size = 4 << 20
	newSource := func(change func(m *MemSource)) *shrinkingSource {
		data := disk(1, size)
		// Data at [0, 1 MiB) and [3.5 MiB, 4 MiB); a hole between.
		clear(data[1<<20 : 7<<19])
		return &shrinkingSource{MemSource: MemSource{Data: data, Holes: [][2]int64{{1 << 20, 7 << 19}}},
			change: change, current: size}
	}
	cases := []struct {
		name   string
		change func(m *MemSource)
	}{
		// The file is truncated to 1.1 MiB: the data at 3.5 MiB is gone,
		// and SEEK_DATA past the new end finds nothing.
		{"shrinks", func(m *MemSource) {
			m.Data = m.Data[:1<<20+100<<10]
			m.Holes = nil
		}},
		// The hole between gets data, at the same size.
		{"allocates", func(m *MemSource) {
			m.Holes = nil
			copy(m.Data[2<<20:], disk(2, 1<<20))
		}},
		// It grows.
		{"grows", func(m *MemSource) { m.Data = append(m.Data, disk(3, 1<<20)...) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := TestVault(t, Config{BlockSize: 64 << 10})
			src := newSource(c.change)
			_, err := v.Backup(context.Background(), "vm", []DiskSource{{Name: "vda", Src: src}}, BackupOptions{})
			if !errors.Is(err, ErrSourceChanged) {
				t.Fatalf("backup of a changing source: %v, want ErrSourceChanged", err)
			}
			if ids, _ := v.PointIDs("vm"); len(ids) != 0 {
				t.Fatalf("a point was committed: %v", ids)
			}
		})
	}
	// Not a change: the same bytes, or a hole that is now reported as
	// data but still reads as zeros (a fresh file's extents settling).
	for name, change := range map[string]func(m *MemSource){
		"unchanged":       func(*MemSource) {},
		"zeros as data":   func(m *MemSource) { m.Holes = nil },
		"data as a hole":  func(m *MemSource) { m.Holes = [][2]int64{{1 << 20, 4 << 20}} },
		"hole in a block": func(m *MemSource) { m.Holes = [][2]int64{{1<<20 + 512, 7 << 19}} },
	} {
		t.Run(name, func(t *testing.T) {
			v := TestVault(t, Config{BlockSize: 64 << 10})
			src := newSource(change)
			if _, err := v.Backup(context.Background(), "vm", []DiskSource{{Name: "vda", Src: src}}, BackupOptions{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestBackupProgressMatchesWork checks that the progress total is what
// the backup reads, to the byte: whole blocks over the data ranges.
func TestBackupProgressMatchesWork(t *testing.T) {
	v := TestVault(t, Config{BlockSize: 64 << 10})
	data := disk(4, 1<<20+1000)
	// Data ranges that start and end inside blocks, two in one block.
	holes := [][2]int64{{10, 20}, {100 << 10, 300 << 10}, {310 << 10, 600 << 10}}
	for _, h := range holes {
		clear(data[h[0]:h[1]])
	}
	var last, total int64
	_, err := v.Backup(context.Background(), "vm", []DiskSource{{Name: "vda", Src: &MemSource{Data: data, Holes: holes}}},
		BackupOptions{Progress: func(done, tot int64) {
			if done > tot {
				t.Errorf("progress %d past its total %d", done, tot)
			}
			last, total = done, tot
		}})
	if err != nil {
		t.Fatal(err)
	}
	// Blocks read: 0, 1 (64K-128K), 4 (256K-320K), 9 .. 15, and the
	// 1000-byte tail.
	want := int64(64<<10)*(2+1+7) + 1000
	if last != total || total != want {
		t.Errorf("progress ended at %d of %d, want %d of %d", last, total, want, want)
	}
}
