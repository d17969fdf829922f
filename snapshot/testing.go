package snapshot

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"
)

// MemSource is an in-memory Source for tests. Ranges listed in Holes read
// as zeros and are reported as holes by NextData.
type MemSource struct {
	Data  []byte
	Holes [][2]int64 // sorted [start, end) pairs
}

func (m *MemSource) Size() int64 { return int64(len(m.Data)) }

func (m *MemSource) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.Data)) {
		return 0, io.EOF
	}
	n := copy(p, m.Data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *MemSource) NextData(off int64) (int64, int64, error) {
	size := m.Size()
	for _, h := range m.Holes {
		if off < h[0] {
			return off, min(h[0], size), nil
		}
		if off < h[1] {
			off = h[1]
		}
	}
	if off >= size {
		return size, size, nil
	}
	return off, size, nil
}

// TestVault creates a vault in a temporary directory with a clock that
// advances one second per call, and verifies it when the test ends.
func TestVault(t testing.TB, cfg Config) *Vault {
	t.Helper()
	dir := t.TempDir()
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	if err := Init(dir, cfg, now); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	v, err := Open(dir, Options{Clock: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Second)
		return now
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rep, err := v.Verify(context.Background(), VerifyOptions{Data: true})
		if err != nil {
			t.Errorf("verify at cleanup: %v", err)
		} else if !rep.OK() && !t.Failed() {
			t.Errorf("verify at cleanup: %+v", rep.Problems)
		}
		v.Close()
	})
	return v
}
