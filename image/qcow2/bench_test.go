package qcow2

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// benchSource is 256 MiB of concatenated Go source files: compressible
// text, like a disk full of source trees.
func benchSource(b *testing.B) *rawSource {
	b.Helper()
	const size = 256 << 20
	buf := make([]byte, 0, size)
	goroot, _ := exec.Command("go", "env", "GOROOT").Output()
	root := filepath.Join(strings.TrimSpace(string(goroot)), "src")
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || len(buf) >= size || d.IsDir() || filepath.Ext(p) != ".go" {
			return nil
		}
		data, err := os.ReadFile(p)
		if err == nil {
			buf = append(buf, data...)
		}
		return nil
	})
	if len(buf) == 0 {
		b.Skip("no Go sources under GOROOT")
	}
	for len(buf) < size {
		buf = append(buf, buf[:min(len(buf), size-len(buf))]...)
	}
	return &rawSource{b: buf[:size], chunk: 1 << 20}
}

// BenchmarkWrite writes an image file in place; set CAIRN_BENCH_RAW to
// also save the source there, for comparison with qemu-img convert -c.
func BenchmarkWrite(b *testing.B) {
	src := benchSource(b)
	if p := os.Getenv("CAIRN_BENCH_RAW"); p != "" {
		os.WriteFile(p, src.b, 0o644)
	}
	for _, comp := range []string{"zlib", "zstd"} {
		b.Run(comp, func(b *testing.B) {
			b.SetBytes(src.Size())
			var out int64
			for b.Loop() {
				f, err := os.Create(filepath.Join(b.TempDir(), "out.qcow2"))
				if err != nil {
					b.Fatal(err)
				}
				n, err := Write(context.Background(), f, src, WriterOptions{Compression: comp}, nil)
				f.Close()
				if err != nil {
					b.Fatal(err)
				}
				out = n
			}
			b.ReportMetric(float64(out)/float64(src.Size()), "ratio")
			b.ReportMetric(float64(out), "outbytes")
		})
	}
}
