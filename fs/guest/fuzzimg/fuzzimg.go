// Package fuzzimg is the run-length form the guest filesystem fuzzers
// take their disk images in, so that seeds made from real images (mostly
// zeros and bitmap fill) stay a few KB and the committed corpora of every
// fuzzer read alike.
//
// Format: repeated (run count, run byte, literal count, literal bytes),
// counts as uvarints. Any byte string decodes: a truncated or oversized
// record ends the image, so fuzzers can mutate it freely. It is used by
// tests only.
package fuzzimg

import (
	"bytes"
	"encoding/binary"
)

// Pack encodes img: runs of 8 or more equal bytes become run records,
// everything else literals.
func Pack(img []byte) []byte {
	const minRun = 8
	runAt := func(i int) bool {
		return i+minRun <= len(img) && bytes.Count(img[i:i+minRun], img[i:i+1]) == minRun
	}
	var out []byte
	for i := 0; i < len(img); {
		r := i
		if runAt(i) {
			for r < len(img) && img[r] == img[i] {
				r++
			}
		}
		e := r
		for e < len(img) && !runAt(e) {
			e++
		}
		var fill byte
		if r > i {
			fill = img[i]
		}
		out = binary.AppendUvarint(out, uint64(r-i))
		out = append(out, fill)
		out = binary.AppendUvarint(out, uint64(e-r))
		out = append(out, img[r:e]...)
		i = e
	}
	return out
}

// Decode walks the image b encodes, up to max bytes, calling run for each
// run of n fill bytes and lit for each literal stretch, in order. A
// record that would pass max ends a run there or the image.
func Decode(b []byte, max int64, run func(n int64, fill byte), lit func(p []byte)) {
	size := int64(0)
	for len(b) > 0 {
		rep, n := binary.Uvarint(b)
		if n <= 0 || len(b) < n+1 || rep > uint64(max-size) {
			return
		}
		run(int64(rep), b[n])
		size += int64(rep)
		b = b[n+1:]
		l, n := binary.Uvarint(b)
		if n <= 0 {
			return
		}
		b = b[n:]
		l = min(l, uint64(len(b)), uint64(max-size))
		lit(b[:l])
		size += int64(l)
		b = b[l:]
	}
}
