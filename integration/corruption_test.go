package integration

import (
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestCorruptionMatrix damages every kind of file a vault holds, in
// every way storage fails (flipped bits, truncation, loss), and checks
// with the real binary that cairn never serves a wrong byte and names
// what is damaged exactly.
//
// Design. One vault is built once (newMatrixFixture: 3 resources, 10
// points, 4 KiB blocks, an ext4 disk made with mkfs.ext4 -d, two
// policies). Its ground truth is learnt from outside the binary: the
// BLAKE3 of every block of every disk kept, map pages from those,
// checked against the point records and every blob of every pack
// (corruption_truth_test.go). Each trial copies the vault (on a tmpfs;
// packs and records as hard links until damaged) and damages the copy;
// from the bytes it changed it knows which blobs it hit, and from the
// truth which points, disks and byte ranges cannot be read any more (a
// block: its range wherever a disk holds it; a map page: the page's
// whole range).
//
// Trials run as parallel subtests named trialNNN-KIND, trial i with seed
// SEED+i; the seed is printed, CAIRN_MATRIX_SEED changes it and
// CAIRN_MATRIX_TRIALS the number of trials (204 by default, 60 with
// -short), and -run 'TestCorruptionMatrix/trials/trial017-' runs one
// again. Kinds go round the list of kinds, so every kind of file is
// damaged in every way:
//
//   - storage trials (packs: the 16-byte header, a blob's header, a
//     blob's payload, the trailer, truncation, deletion; point records,
//     which hold the map pages' hashes: flips, truncation, deletion)
//     damage one to three different files at once, which keeps the truth
//     exact (the union of what each hits). verify --data --json must
//     name exactly the expected points, disks and ranges, and the damaged
//     records (plain verify too, for losses and truncations, which it
//     sees without reading data); restore and export of a damaged disk
//     fail with one line naming an offset inside the damage and leave no
//     file; restore --skip-damaged writes zeros in exactly those ranges
//     and the original bytes elsewhere, and exits 1; an undamaged disk
//     restores byte for byte. Every fourth trial then runs cairn repair,
//     which must report the same damage, heal a damaged record from the
//     index's sound copy and drop a point whose record is gone; every
//     eighth mounts the copy and reads the damaged disks whole and an
//     undamaged one through FUSE, and the files of their ext4 filesystems:
//     EIO where damaged, the original bytes elsewhere.
//   - cairn.json and policy trials damage one file: the vault is
//     refused with one line, or works and serves every point right;
//     cairn repair mends what is refused; a damaged policy is named by
//     policy list and hides no other.
//   - index trials damage one file of the Badger index (tables, value
//     log, MANIFEST, DISCARD, KEYREGISTRY, cairn's VERIFIED list) by
//     flipping bits (with the file's time changed, as a write does, or
//     kept, as bit rot does), truncating or deleting it: the vault is
//     refused with "run cairn repair", or works, lists every point and
//     serves it right; cairn repair then brings every point back, byte
//     for byte, and reports nothing damaged (every sixth then reads two
//     disks through a mount).
//
// The summary line counts corruptions made, detected (named by verify,
// or the vault refused until a repair; a pack's damaged trailer, which
// harms no block since reads never use it and repair does without, must
// be noted by verify --data), harmless (nothing affected and everything
// reads right: a blob header's four pad bytes, which no check covers
// because nothing reads them; a pack's header; index files Badger
// rewrites or does not need), missed (neither: the trial failed), and
// wrong bytes served, which must be 0.
func TestCorruptionMatrix(t *testing.T) {
	needFUSE(t)
	needTool(t, "mkfs.ext4", "debugfs", "cmp")
	trials, seed := mxTrials(t)
	t.Logf("seed %d, %d trials (CAIRN_MATRIX_SEED, CAIRN_MATRIX_TRIALS)", seed, trials)
	start := time.Now()
	f := newMatrixFixture(t)
	t.Logf("fixture: %d points, %d packs, %d index files, built in %v", len(f.points), len(f.packs), len(f.index),
		time.Since(start).Round(time.Millisecond))
	st := &mxStats{made: map[string]int{}, detected: map[string]int{}, harmless: map[string]int{}, flagged: map[string]int{}}
	kinds := mxKinds()
	var ran atomic.Int64
	t.Run("trials", func(t *testing.T) {
		for i := 0; i < trials; i++ {
			kind := kinds[i%len(kinds)]
			seed := seed + int64(i)
			// Which checks a trial adds goes by its round of the kinds,
			// so that each kind gets them in turn.
			round := i / len(kinds)
			t.Run(fmt.Sprintf("trial%03d-%s", i, kind), func(t *testing.T) {
				t.Parallel()
				ran.Add(1)
				t.Logf("seed %d", seed)
				rng := rand.New(rand.NewSource(seed))
				switch {
				case strings.HasPrefix(kind, "index-"):
					f.indexTrial(t, rng, kind, (i+round)%6 == 1, st)
				case strings.HasPrefix(kind, "config-"):
					f.configTrial(t, rng, kind, st)
				case strings.HasPrefix(kind, "policy-"):
					f.policyTrial(t, rng, kind, st)
				default:
					f.storageTrial(t, rng, kind, (i+round)%8 == 1, (i+round)%4 == 2, st)
				}
			})
		}
	})
	made, detected, harmless := st.total(st.made), st.total(st.detected), st.total(st.harmless)
	var byKind []string
	for _, k := range mxSortedKeys(st.made) {
		s := fmt.Sprintf("%s %d/%d", k, st.detected[k], st.made[k])
		if st.harmless[k] > 0 {
			s += fmt.Sprintf(" (%d harmless", st.harmless[k])
			if st.flagged[k] > 0 {
				s += fmt.Sprintf(", %d of them reported", st.flagged[k])
			}
			s += ")"
		}
		byKind = append(byKind, s)
	}
	// CPU of this process (other tests run in it too) and of the
	// commands it ran (cairn, mkfs, cmp) that have ended.
	var self, children syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	cpu := func(r syscall.Rusage) time.Duration {
		return time.Duration(r.Utime.Nano() + r.Stime.Nano()).Round(time.Second)
	}
	t.Logf("matrix: %d trials (seed %d), %d corruptions made, %d detected, %d harmless, %d missed, %d wrong bytes served; "+
		"%d repairs, %d mounts read %d blocks and %d guest files; %v (CPU of the test process so far %v, of its commands %v); by kind (detected/made): %s",
		ran.Load(), seed, made, detected, harmless, made-detected-harmless, st.wrong, st.repairs,
		st.mounts, st.blocksRead, st.guestRead, time.Since(start).Round(time.Second), cpu(self), cpu(children),
		strings.Join(byKind, ", "))
	if st.wrong != 0 {
		t.Errorf("%d wrong bytes served", st.wrong)
	}
}

const mxDefaultSeed = 20261202

// mxTrials returns the number of trials and the first seed.
func mxTrials(t *testing.T) (int, int64) {
	t.Helper()
	trials := 204
	if testing.Short() {
		trials = 60
	}
	if s := os.Getenv("CAIRN_MATRIX_TRIALS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("CAIRN_MATRIX_TRIALS=%q: want a number of trials", s)
		}
		trials = n
	}
	seed := int64(mxDefaultSeed)
	if s := os.Getenv("CAIRN_MATRIX_SEED"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("CAIRN_MATRIX_SEED=%q: want a number", s)
		}
		seed = n
	}
	return trials, seed
}

// mxStorageKinds damage packs and point records; a storage trial may
// add more of them to its own.
var mxStorageKinds = []string{"pack-header-flip", "pack-blobheader-flip", "pack-payload-flip", "pack-trailer-flip",
	"pack-truncate", "pack-delete", "record-flip", "record-truncate", "record-delete"}

// mxKinds lists the trial kinds: a round of the list is 51 trials (the
// storage kinds three times), four rounds 204. Bit rot (a flip that
// keeps the file's time) matters for tables only: an open skips checking
// a table it verified before at that size and time.
func mxKinds() []string {
	var out []string
	for i := 0; i < 3; i++ {
		out = append(out, mxStorageKinds...)
	}
	return append(out, "config-flip", "config-truncate", "config-delete", "policy-flip", "policy-truncate", "policy-delete",
		"index-sst-flip", "index-sst-rot", "index-sst-truncate", "index-sst-delete",
		"index-vlog-flip", "index-vlog-truncate", "index-vlog-delete",
		"index-MANIFEST-flip", "index-MANIFEST-truncate", "index-MANIFEST-delete",
		"index-DISCARD-flip", "index-DISCARD-truncate", "index-DISCARD-delete",
		"index-KEYREGISTRY-flip", "index-KEYREGISTRY-truncate", "index-KEYREGISTRY-delete",
		"index-VERIFIED-flip", "index-VERIFIED-delete")
}

// mxStats counts what the trials did; safe for the parallel trials.
type mxStats struct {
	mu                                sync.Mutex
	made, detected, harmless, flagged map[string]int
	wrong                             int64
	repairs                           int
	mounts, blocksRead, guestRead     int
}

func (s *mxStats) count(m map[string]int, kind string) {
	s.mu.Lock()
	m[kind]++
	s.mu.Unlock()
}

// settle counts kind in m once the trial t is over, if it passed: a
// corruption of a trial that failed counts as missed.
func (s *mxStats) settle(t *testing.T, m map[string]int, kind string) {
	t.Cleanup(func() {
		if !t.Failed() {
			s.count(m, kind)
		}
	})
}

func (s *mxStats) total(m map[string]int) (n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range m {
		n += v
	}
	return n
}

func (s *mxStats) wrongBytes(n int64) {
	s.mu.Lock()
	s.wrong += n
	s.mu.Unlock()
}

func (s *mxStats) add(field *int, n int) {
	s.mu.Lock()
	*field += n
	s.mu.Unlock()
}

func mxSortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
