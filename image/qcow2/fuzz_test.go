package qcow2

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzOpen feeds arbitrary bytes to the reader: it must return errors,
// never panic, hang or allocate beyond its bounds.
func FuzzOpen(f *testing.F) {
	f.Fuzz(fuzzBody)
}

func fuzzBody(t *testing.T, data []byte) {
	{
		im, err := NewReader(bytes.NewReader(data), int64(len(data)), nil)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrEncrypted) {
				t.Fatalf("error without sentinel: %v", err)
			}
			return
		}
		defer im.Close()
		buf := make([]byte, 64<<10)
		for _, off := range []int64{0, 4096, im.Size() / 2, im.Size() - 100} {
			if off >= 0 {
				if _, err := im.ReadAt(buf, off); err != nil && err != io.EOF && !errors.Is(err, ErrCorrupt) {
					t.Fatalf("ReadAt(%d): %v", off, err)
				}
			}
		}
		off := int64(0)
		for range 64 {
			s, e, err := im.NextData(off)
			if err != nil {
				return
			}
			if s == im.Size() {
				return
			}
			if s < off || e <= s || e > im.Size() {
				t.Fatalf("NextData(%d) = [%d,%d) size %d", off, s, e, im.Size())
			}
			n := min(e-s, int64(len(buf)))
			im.ReadAt(buf[:n], s)
			off = e
		}
	}
}
