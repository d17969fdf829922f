package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/image/nbd"
)

// runNBDWait waits until the NBD server at URI answers a 4 KiB read,
// and prints the seconds from -since (a Unix time with fraction, when
// the server was started) to that first byte: time to first byte, from
// the client's side. Connection refusals and a missing socket are
// retried every millisecond until -timeout.
func runNBDWait(args []string) error {
	fl := flag.NewFlagSet("nbdwait", flag.ContinueOnError)
	uri := fl.String("uri", "", "NBD URI")
	since := fl.String("since", "", "start time, Unix seconds (date +%s.%N)")
	timeout := fl.Duration("timeout", time.Minute, "give up after")
	if err := fl.Parse(args); err != nil {
		return err
	}
	t0, err := strconv.ParseFloat(*since, 64)
	if *uri == "" || err != nil {
		return errors.New("usage: nbdwait -uri URI -since UNIXTIME [-timeout D]")
	}
	start := time.Unix(0, int64(t0*1e9))
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	buf := make([]byte, 4096)
	for {
		c, err := nbd.Dial(ctx, *uri, nbd.ClientOptions{})
		if err == nil {
			_, err = c.ReadAt(buf, 0)
			c.Close()
			if err == nil {
				fmt.Printf("ttfb_s %.4f\n", time.Since(start).Seconds())
				return nil
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: no first byte within %s: %w", *uri, *timeout, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// runNBDReads times N reads of -size bytes from the NBD export at URI,
// at seeded 4 KiB-aligned offsets inside the data of IMAGE (the same
// disk as a sparse file), by J goroutines sharing one connection, as a
// guest's parallel requests do. It prints reads per second and the 50th
// and 99th percentile latency of one read, then checks every byte read
// against IMAGE (after the clock stopped):
//
//	reads N seconds S reads_per_s R p50_us A p99_us B failed F wrong W
func runNBDReads(args []string) error {
	fl := flag.NewFlagSet("nbdreads", flag.ContinueOnError)
	uri := fl.String("uri", "", "NBD URI")
	image := fl.String("image", "", "the disk as a sparse file: offsets and the bytes to expect")
	n := fl.Int("n", 2000, "reads")
	j := fl.Int("j", 1, "parallel readers on the one connection")
	seed := fl.Uint64("seed", 1, "PRNG seed")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *uri == "" || *image == "" || *n <= 0 || *j <= 0 {
		return errors.New("usage: nbdreads -uri URI -image IMAGE [-n N] [-j J] [-seed S]")
	}
	offs, err := dataOffsets(*image, *seed, *n)
	if err != nil {
		return err
	}
	ctx := context.Background()
	c, err := nbd.Dial(ctx, *uri, nbd.ClientOptions{MaxInFlight: max(*j, 16)})
	if err != nil {
		return err
	}
	defer c.Close()
	const size = 4096
	got := make([]byte, len(offs)*size)
	lat := make([]time.Duration, len(offs))
	fails := make([]error, len(offs))
	var wg sync.WaitGroup
	start := time.Now()
	for w := range *j {
		wg.Go(func() {
			for i := w; i < len(offs); i += *j {
				t := time.Now()
				_, fails[i] = c.ReadAt(got[i*size:(i+1)*size], offs[i])
				lat[i] = time.Since(t)
			}
		})
	}
	wg.Wait()
	el := time.Since(start).Seconds()

	f, err := os.Open(*image)
	if err != nil {
		return err
	}
	defer f.Close()
	want := make([]byte, size)
	failed, wrong := 0, 0
	var first error
	for i, off := range offs {
		if fails[i] != nil {
			failed++
			first = cmp.Or(first, fails[i])
			continue
		}
		if _, err := f.ReadAt(want, off); err != nil {
			return err
		}
		if !bytes.Equal(got[i*size:(i+1)*size], want) {
			wrong++
		}
	}
	if first != nil {
		fmt.Fprintf(os.Stderr, "benchtool nbdreads: %d of %d reads failed, first: %v\n", failed, len(offs), first)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	fmt.Printf("reads %d seconds %.3f reads_per_s %.0f p50_us %.0f p99_us %.0f failed %d wrong %d\n",
		len(offs), el, float64(len(offs))/el, pct(0.50), pct(0.99), failed, wrong)
	if wrong > 0 {
		return fmt.Errorf("%d reads returned bytes that differ from %s", wrong, *image)
	}
	return nil
}
