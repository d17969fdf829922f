package main

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"time"
)

// runPreads times N 4 KiB pread calls on FILE (typically a disk image
// seen through a FUSE mount) at seeded, 4 KiB-aligned offsets inside the
// data extents of IMAGE (the same disk on the host), spread over J
// goroutines that each own a slice of the offsets. It prints
// "reads READS seconds S reads_per_s R failed F", so every tool is timed by the
// same reader. Failed reads are counted and reported (with the first
// error on stderr), not fatal, unless every read fails.
func runPreads(args []string) error {
	fl := flag.NewFlagSet("preads", flag.ContinueOnError)
	seed := fl.Uint64("seed", 1, "PRNG seed")
	n := fl.Int("n", 2000, "reads")
	j := fl.Int("j", 1, "parallel readers")
	image := fl.String("image", "", "image whose data extents choose the offsets")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() != 1 || *image == "" || *n <= 0 || *j <= 0 {
		return errors.New("usage: preads -image IMAGE [-seed S] [-n N] [-j J] FILE")
	}
	offs, err := dataOffsets(*image, *seed, *n)
	if err != nil {
		return err
	}
	f, err := os.Open(fl.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	var wg sync.WaitGroup
	errs := make([]int, *j)
	first := make([]error, *j)
	start := time.Now()
	for w := 0; w < *j; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			buf := make([]byte, 4096)
			for i := w; i < len(offs); i += *j {
				// A failed read is counted, not fatal: a peer's mount
				// that fails some reads is a finding, not a reason to stop.
				if _, err := f.ReadAt(buf, offs[i]); err != nil {
					errs[w]++
					if first[w] == nil {
						first[w] = fmt.Errorf("pread at %d: %w", offs[i], err)
					}
				}
			}
		}(w)
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	failed := 0
	for _, e := range errs {
		failed += e
	}
	if err := errors.Join(first...); err != nil {
		fmt.Fprintf(os.Stderr, "benchtool preads: %d of %d reads failed, first: %v\n", failed, len(offs), err)
	}
	if failed == len(offs) {
		return errors.New("every read failed")
	}
	fmt.Printf("reads %d seconds %.3f reads_per_s %.0f failed %d\n", len(offs), el, float64(len(offs))/el, failed)
	return nil
}

// dataOffsets draws n 4 KiB-aligned offsets of whole 4 KiB blocks inside
// the data extents of image, uniformly over its data bytes.
func dataOffsets(image string, seed uint64, n int) ([]int64, error) {
	f, err := os.Open(image)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	exts, err := dataExtents(f)
	if err != nil {
		return nil, err
	}
	var total int64
	for _, e := range exts {
		total += e.End - e.Start
	}
	if total < 4096 {
		return nil, fmt.Errorf("%s: no data", image)
	}
	r := rand.New(rand.NewPCG(seed, 0x7072656164))
	var out []int64
	for tries := 0; len(out) < n && tries < n*100; tries++ {
		pos := r.Int64N(total)
		for _, e := range exts {
			if pos < e.End-e.Start {
				s := (e.Start + pos) &^ 4095
				if s >= e.Start && s+4096 <= e.End {
					out = append(out, s)
				}
				break
			}
			pos -= e.End - e.Start
		}
	}
	if len(out) < n {
		return nil, fmt.Errorf("%s: found only %d offsets", image, len(out))
	}
	return out, nil
}
