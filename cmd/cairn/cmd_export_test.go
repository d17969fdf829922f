package main

import (
	"bytes"
	"errors"
	"testing"
)

func TestExportOptionsCheck(t *testing.T) {
	cases := []struct {
		format, compress string
		level            int
		output           string
		ok               bool
		codec            string // after defaults
	}{
		{"raw", "", 0, "/x", true, "none"},
		{"qcow2", "", 0, "/x", true, "zlib"},
		{"qcow2", "zstd", 22, "-", true, "zstd"},
		{"raw", "gzip", 9, "/x", true, "gzip"},
		{"raw", "lz4", 1, "/x", true, "lz4"},
		{"qcow2", "gzip", 0, "/x", false, ""},
		{"qcow2", "lz4", 0, "/x", false, ""},
		{"raw", "zlib", 0, "/x", false, ""},
		{"raw", "", 3, "/x", false, ""},
		{"qcow2", "none", 3, "/x", false, ""},
		{"qcow2", "zlib", 10, "/x", false, ""},
		{"raw", "zstd", 23, "/x", false, ""},
		{"", "", 0, "/x", false, ""},
		{"vmdk", "", 0, "/x", false, ""},
		{"raw", "", 0, "", false, ""},
		{"raw", "", 0, "relative/x", false, ""},
	}
	for _, c := range cases {
		o := exportRequest{Point: "p@latest", Format: c.format, Compress: c.compress, Level: c.level, Output: c.output}
		err := o.check()
		var ue usageError
		switch {
		case c.ok && err != nil:
			t.Errorf("%+v: %v", c, err)
		case !c.ok && !errors.As(err, &ue):
			t.Errorf("%+v: %v, want a usage error", c, err)
		case c.ok && o.Compress != c.codec:
			t.Errorf("%+v: codec %q, want %q", c, o.Compress, c.codec)
		}
	}
}

type countWriter struct {
	bytes.Buffer
	max, calls int
}

func (c *countWriter) Write(p []byte) (int, error) {
	c.calls++
	c.max = max(c.max, len(p))
	return c.Buffer.Write(p)
}

func TestZeroWriter(t *testing.T) {
	var cw countWriter
	z := &zeroWriter{w: &cw}
	data := bytes.Repeat([]byte{1}, 2500)
	z.Write(data)
	z.Zeros(3<<20 + 7)
	z.Write(data[:10])
	if cw.max > 1<<20 {
		t.Errorf("a write of %d bytes of zeros: want at most 1 MiB at a time", cw.max)
	}
	want := append(append(append([]byte{}, data...), make([]byte, 3<<20+7)...), data[:10]...)
	if !bytes.Equal(cw.Bytes(), want) {
		t.Errorf("stream of %d bytes, want %d", cw.Len(), len(want))
	}
}
