package snapshot

import (
	"encoding/binary"
	"math"
	"math/bits"

	"github.com/cairn-backup/cairn/index"
)

// bloom is a Bloom filter of block hashes: no false negatives, a few
// false positives. Garbage collection uses it where a set of every hash
// would not fit in bounded memory: a false positive only keeps a dead
// block until a later gc (whose seed differs) frees it.
type bloom struct {
	words []uint64
	k     int
	seed  uint64
}

// newBloom sizes a filter for n hashes at a false positive rate of p.
func newBloom(n int64, p float64, seed uint64) *bloom {
	n = max(n, 1024)
	m := int64(math.Ceil(-float64(n) * math.Log(p) / (math.Ln2 * math.Ln2)))
	k := int(math.Round(float64(m) / float64(n) * math.Ln2))
	return &bloom{words: make([]uint64, (m+63)/64), k: max(1, min(k, 16)), seed: seed}
}

// positions derives the filter's bit positions from the hash itself,
// which is already uniform (BLAKE3), mixed with the seed.
func (b *bloom) positions(h index.Hash, fn func(word int, bit uint64) bool) bool {
	h1 := binary.LittleEndian.Uint64(h[0:]) ^ b.seed
	h2 := binary.LittleEndian.Uint64(h[8:]) ^ bits.RotateLeft64(b.seed, 31) | 1
	m := uint64(len(b.words)) * 64
	for i := 0; i < b.k; i++ {
		pos := (h1 + uint64(i)*h2) % m
		if !fn(int(pos/64), 1<<(pos%64)) {
			return false
		}
	}
	return true
}

func (b *bloom) add(h index.Hash) {
	b.positions(h, func(w int, bit uint64) bool { b.words[w] |= bit; return true })
}

func (b *bloom) has(h index.Hash) bool {
	return b.positions(h, func(w int, bit uint64) bool { return b.words[w]&bit != 0 })
}
