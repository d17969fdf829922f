package main

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cairn-backup/cairn/snapshot"
)

// runRandRead times single-threaded random 4 KiB reads of a point's disk
// at seeded offsets inside its stored data. The vault is opened with a
// one-byte block cache, so every read fetches, checks and decompresses a
// whole block: the cost a cold random read pays for the chunk size.
func runRandRead(args []string) error {
	fl := flag.NewFlagSet("randread", flag.ContinueOnError)
	dir := fl.String("vault", "", "vault directory")
	ref := fl.String("point", "", "point, e.g. disk@latest")
	n := fl.Int("n", 2000, "number of reads")
	size := fl.Int("size", 4096, "bytes per read")
	seed := fl.Uint64("seed", 7, "PRNG seed")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *ref == "" || *n <= 0 || *size <= 0 {
		return errors.New("usage: randread -vault DIR -point REF [-n N] [-size B] [-seed S]")
	}
	v, err := snapshot.Open(*dir, snapshot.Options{CacheSize: 1})
	if err != nil {
		return err
	}
	defer v.Close()
	p, err := v.Resolve(*ref)
	if err != nil {
		return err
	}
	d, err := v.OpenDisk(p, "")
	if err != nil {
		return err
	}
	var exts []extent
	var total int64
	for off := int64(0); off < d.Size(); {
		s, e, err := d.NextData(off)
		if err != nil {
			return err
		}
		if s >= e {
			break
		}
		exts = append(exts, extent{s, e})
		total += e - s
		off = e
	}
	if total < int64(*size) {
		return errors.New("point holds no data")
	}
	r := rand.New(rand.NewPCG(*seed, 0x72616e64))
	offs := make([]int64, *n)
	for i := range offs {
		pos := r.Int64N(total)
		for _, e := range exts {
			if pos < e.End-e.Start {
				// Reads are 4 KiB aligned, as a filesystem's would be.
				offs[i] = min(e.Start+pos-pos%4096, e.End-int64(*size))
				break
			}
			pos -= e.End - e.Start
		}
	}
	buf := make([]byte, *size)
	start := time.Now()
	for _, off := range offs {
		if _, err := d.ReadAt(buf, off); err != nil {
			return err
		}
	}
	el := time.Since(start)
	fmt.Printf("reads=%d block_size=%d seconds=%.3f reads_per_s=%.0f us_per_read=%.1f\n",
		*n, d.BlockSize(), el.Seconds(), float64(*n)/el.Seconds(), float64(el.Microseconds())/float64(*n))
	return nil
}
