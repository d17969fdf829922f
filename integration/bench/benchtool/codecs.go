package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/zeebo/blake3"
)

// runCodecs compresses every k-th non-zero chunk of IMAGE's data with the
// codecs and levels cairn could use, in one goroutine, and prints the CPU
// seconds per GB of input and the compressed size. It shows what the
// codec costs a backup apart from I/O, hashing and the index.
func runCodecs(args []string) error {
	fl := flag.NewFlagSet("codecs", flag.ContinueOnError)
	cs := fl.Int("chunk", 256<<10, "chunk size")
	every := fl.Int("every", 4, "sample every k-th chunk")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() != 1 || *cs <= 0 || *every <= 0 {
		return errors.New("usage: codecs [-chunk B] [-every K] IMAGE")
	}
	f, err := os.Open(fl.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	exts, err := dataExtents(f)
	if err != nil {
		return err
	}
	var chunks [][]byte
	var total int64
	k := 0
	for _, e := range exts {
		for off := e.Start - e.Start%int64(*cs); off < e.End; off += int64(*cs) {
			k++
			if k%*every != 0 {
				continue
			}
			b := make([]byte, *cs)
			n, err := f.ReadAt(b, off)
			if n == 0 && err != nil {
				return err
			}
			if allZero(b[:n]) {
				continue
			}
			chunks = append(chunks, b[:n])
			total += int64(n)
		}
	}
	fmt.Printf("%d chunks of %d bytes, %.1f MiB sampled\n\n", len(chunks), *cs, float64(total)/mib)
	fmt.Println("| codec | CPU s per GB | MB/s per core | stored % |")
	fmt.Println("|---|---:|---:|---:|")
	type codec struct {
		name string
		fn   func(src, dst []byte) []byte
	}
	codecs := []codec{{"blake3-256 hash (for scale)", func(src, dst []byte) []byte {
		s := blake3.Sum256(src)
		return s[:]
	}}}
	for _, lv := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression} {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(lv), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
		if err != nil {
			return err
		}
		codecs = append(codecs, codec{"zstd " + lv.String(), func(src, dst []byte) []byte { return e.EncodeAll(src, dst[:0]) }})
	}
	var lc lz4.Compressor
	codecs = append(codecs, codec{"lz4", func(src, dst []byte) []byte {
		n, err := lc.CompressBlock(src, dst[:cap(dst)])
		if err != nil || n == 0 {
			return src
		}
		return dst[:n]
	}})
	dst := make([]byte, lz4.CompressBlockBound(*cs)+(*cs))
	for _, c := range codecs {
		var stored int64
		start := time.Now()
		for _, b := range chunks {
			out := c.fn(b, dst)
			stored += int64(min(len(out), len(b))) // stored raw when not smaller
		}
		el := time.Since(start).Seconds()
		pct := fmt.Sprintf("%.1f", 100*float64(stored)/float64(total))
		if c.name[0] == 'b' {
			pct = "–"
		}
		fmt.Printf("| %s | %.2f | %.0f | %s |\n", c.name, el/(float64(total)/1e9), float64(total)/1e6/el, pct)
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
