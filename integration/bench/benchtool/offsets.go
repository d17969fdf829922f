package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
)

// runOffsets prints up to n seeded, aligned, non-overlapping ranges of
// length l that each lie inside one data extent of IMAGE, one offset per
// line, in the order drawn. The caller filters them further (for example
// with debugfs icheck) and takes the first ones it likes.
func runOffsets(args []string) error {
	fl := flag.NewFlagSet("offsets", flag.ContinueOnError)
	seed := fl.Uint64("seed", 1, "PRNG seed")
	n := fl.Int("n", 100, "how many ranges")
	l := fl.Int64("len", 1<<20, "range length")
	align := fl.Int64("align", 4096, "alignment of each range's start")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() != 1 || *l <= 0 || *align <= 0 {
		return errors.New("usage: offsets [-seed S] [-n N] [-len L] [-align A] IMAGE")
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
	var total int64
	for _, e := range exts {
		total += e.End - e.Start
	}
	if total < *l {
		return fmt.Errorf("%s: only %d data bytes", fl.Arg(0), total)
	}
	r := rand.New(rand.NewPCG(*seed, 0x6361697266))
	var taken []extent
	for tries := 0; len(taken) < *n && tries < *n*1000; tries++ {
		pos := r.Int64N(total)
		for _, e := range exts {
			if pos < e.End-e.Start {
				pos += e.Start
				start := pos - pos%*align
				if start >= e.Start && start+*l <= e.End && !overlaps(taken, start, start+*l) {
					taken = append(taken, extent{start, start + *l})
					fmt.Println(start)
				}
				break
			}
			pos -= e.End - e.Start
		}
	}
	return nil
}

func overlaps(taken []extent, s, e int64) bool {
	for _, t := range taken {
		if s < t.End && t.Start < e {
			return true
		}
	}
	return false
}

// runDiff reports how many bytes lie in 4 KiB blocks that differ between
// two images of the same size, and in how many aligned blocks of a few
// larger sizes, so a backup's "changed" can be put beside the truth.
func runDiff(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: diff A B")
	}
	a, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer a.Close()
	b, err := os.Open(args[1])
	if err != nil {
		return err
	}
	defer b.Close()
	const bs = 4096
	sizes := []int64{4 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20}
	dirty := make([]map[int64]bool, len(sizes))
	for i := range dirty {
		dirty[i] = map[int64]bool{}
	}
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for off := int64(0); ; off += int64(len(ba)) {
		na, ea := io.ReadFull(a, ba)
		nb, eb := io.ReadFull(b, bb)
		if na != nb {
			return errors.New("images differ in size")
		}
		for p := 0; p < na; p += bs {
			q := min(p+bs, na)
			if !bytes.Equal(ba[p:q], bb[p:q]) {
				for i, s := range sizes {
					dirty[i][(off+int64(p))/s] = true
				}
			}
		}
		if ea != nil || eb != nil {
			break
		}
	}
	for i, s := range sizes {
		fmt.Printf("%d\t%d\n", s, int64(len(dirty[i]))*s)
	}
	return nil
}
