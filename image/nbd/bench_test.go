package nbd

import (
	"context"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// memExport is a disk held in memory: the cheapest export, so that the
// numbers are the protocol's and the sockets'.
type memExport []byte

func (m memExport) Size() int64 { return int64(len(m)) }
func (m memExport) ReadAt(p []byte, off int64) (int, error) {
	return copy(p, m[off:]), nil
}

const benchSize = 64 << 20

func benchExport() memExport {
	m := make(memExport, benchSize)
	rand.New(rand.NewSource(1)).Read(m)
	return m
}

// benchTargets are the servers measured: cairn's over a unix socket
// from memory, and qemu-nbd from a file of the same bytes, for scale.
func benchTargets(b *testing.B) map[string]string {
	exp := benchExport()
	t := map[string]string{"cairn": serveExports(b, Options{}, map[string]Export{"": exp})}
	if _, err := exec.LookPath("qemu-nbd"); err == nil {
		raw := filepath.Join(b.TempDir(), "bench.raw")
		if err := os.WriteFile(raw, exp, 0o600); err != nil {
			b.Fatal(err)
		}
		t["qemu-nbd"], _ = startQemuNBD(b, "-r", "-f", "raw", raw)
	}
	return t
}

// BenchmarkRandomRead4K reads 4 KiB at random aligned offsets, one
// request at a time, and reports the latency's median and 99th
// percentile.
func BenchmarkRandomRead4K(b *testing.B) {
	for _, name := range []string{"cairn", "qemu-nbd"} {
		b.Run(name, func(b *testing.B) {
			sock, ok := benchTargets(b)[name]
			if !ok {
				b.Skip("qemu-nbd not installed")
			}
			c := dial(b, sock, "", ClientOptions{})
			rng := rand.New(rand.NewSource(2))
			buf := make([]byte, 4096)
			lat := make([]time.Duration, 0, b.N)
			b.SetBytes(4096)
			b.ResetTimer()
			for range b.N {
				off := rng.Int63n(benchSize/4096) * 4096
				t0 := time.Now()
				if _, err := c.ReadAt(buf, off); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// BenchmarkRandomRead4KParallel reads 4 KiB at random from 8
// goroutines sharing one connection: requests in flight at once.
func BenchmarkRandomRead4KParallel(b *testing.B) {
	for _, name := range []string{"cairn", "qemu-nbd"} {
		b.Run(name, func(b *testing.B) {
			sock, ok := benchTargets(b)[name]
			if !ok {
				b.Skip("qemu-nbd not installed")
			}
			c := dial(b, sock, "", ClientOptions{})
			b.SetBytes(4096)
			b.SetParallelism(4) // 4×GOMAXPROCS goroutines
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				rng := rand.New(rand.NewSource(time.Now().UnixNano()))
				buf := make([]byte, 4096)
				for pb.Next() {
					if _, err := c.ReadAt(buf, rng.Int63n(benchSize/4096)*4096); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkSequentialRead reads the export front to back in 1 MiB
// requests, with 1 or 4 in flight (qemu-img convert keeps several).
func BenchmarkSequentialRead(b *testing.B) {
	for _, name := range []string{"cairn", "qemu-nbd"} {
		for _, depth := range []int{1, 4} {
			b.Run(name+"/depth"+string(rune('0'+depth)), func(b *testing.B) {
				sock, ok := benchTargets(b)[name]
				if !ok {
					b.Skip("qemu-nbd not installed")
				}
				c := dial(b, sock, "", ClientOptions{})
				const piece = 1 << 20
				b.SetBytes(piece)
				b.ResetTimer()
				var next int64
				var mu sync.Mutex
				var wg sync.WaitGroup
				for range depth {
					wg.Go(func() {
						buf := make([]byte, piece)
						for {
							mu.Lock()
							i := next
							next++
							mu.Unlock()
							if i >= int64(b.N) {
								return
							}
							if _, err := c.ReadAtContext(context.Background(), buf, i*piece%benchSize); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
			})
		}
	}
}
