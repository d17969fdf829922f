package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The corruption matrix's trials: what each kind of damage must do to
// the commands.

// verifyJSON is what verify --json and repair --json say.
type verifyJSON struct {
	Problems []struct {
		What   string
		Points []string
	}
	Damaged []damageJSON
	Notes   []string
}

// mxOutcome is what a set of corruptions must do, from the truth.
type mxOutcome struct {
	data        mxDamage        // unreadable ranges, by point and disk
	badRecords  map[string]bool // points whose record storage holds damaged
	goneRecords map[string]bool // points whose record storage lost
}

func (o *mxOutcome) harmful() bool { return len(o.data)+len(o.badRecords)+len(o.goneRecords) > 0 }

// damageStorage damages one to three different packs or point records
// of vault: kind first, then random storage kinds.
func (f *mxFixture) damageStorage(t *testing.T, rng *rand.Rand, vault, kind string, st *mxStats) ([]*mxCorruption, *mxOutcome) {
	t.Helper()
	kinds := []string{kind}
	for i := rng.Intn(3); i > 0; i-- {
		kinds = append(kinds, mxStorageKinds[rng.Intn(len(mxStorageKinds))])
	}
	used := map[string]bool{}
	var cs []*mxCorruption
	for _, k := range kinds {
		var c *mxCorruption
		if strings.HasPrefix(k, "pack-") {
			pk := f.packs[rng.Intn(len(f.packs))]
			if used[pk.rel] {
				continue
			}
			used[pk.rel] = true
			c = damagePack(t, rng, vault, k, pk)
		} else {
			p := f.points[rng.Intn(len(f.points))]
			if used[p.record] {
				continue
			}
			used[p.record] = true
			c = &mxCorruption{kind: k, file: p.record, record: p.name, hit: map[mxHash]bool{}}
			c.what = damageFile(t, rng, vault, p.record, lastWord(k), false)
		}
		t.Logf("%s: %s %s", c.kind, c.file, c.what)
		cs = append(cs, c)
		st.count(st.made, c.kind)
	}
	out := &mxOutcome{badRecords: map[string]bool{}, goneRecords: map[string]bool{}}
	hit := map[mxHash]bool{}
	for _, c := range cs {
		for h := range c.hit {
			hit[h] = true
		}
		switch c.kind {
		case "record-flip", "record-truncate":
			out.badRecords[c.record] = true
		case "record-delete":
			out.goneRecords[c.record] = true
		}
	}
	out.data = f.expect(hit)
	return cs, out
}

// lossesOnly reports whether every corruption lost bytes (a pack or
// record deleted, a pack cut short), which plain verify sees without
// reading data.
func lossesOnly(cs []*mxCorruption) bool {
	for _, c := range cs {
		if c.kind != "pack-delete" && c.kind != "pack-truncate" && c.kind != "record-delete" {
			return false
		}
	}
	return true
}

// storageTrial damages one to three packs or point records and checks
// verify, restore, export, and (mount) the FUSE mount and (repair)
// cairn repair against the truth.
func (f *mxFixture) storageTrial(t *testing.T, rng *rand.Rand, kind string, mount, repair bool, st *mxStats) {
	vault := f.copyVault(t)
	cs, want := f.damageStorage(t, rng, vault, kind, st)

	// verify names exactly what the truth says: plain verify when only
	// bytes were lost (before verify --data records what it finds), and
	// verify --data always.
	if lossesOnly(cs) {
		f.checkVerify(t, vault, want, cs, "verify")
	}
	problems, notes := f.checkVerify(t, vault, want, cs, "verify", "--data")
	for _, c := range cs {
		if len(f.expect(c.hit)) > 0 || c.record != "" {
			st.settle(t, st.detected, c.kind)
			continue
		}
		// A damaged trailer harms no block, but it is damage in storage:
		// verify --data notes it (a cut inside the trailer too).
		trailerNoted := c.pack != nil && strings.Contains(notes, "pack "+c.pack.id+": its trailer")
		if c.kind == "pack-trailer-flip" && !trailerNoted {
			t.Errorf("verify --data does not note the damaged trailer of pack %s; notes:\n%s", c.pack.id, notes)
			continue
		}
		if trailerNoted {
			st.settle(t, st.detected, c.kind)
			continue
		}
		// Nothing a point needs: every read below must be right.
		st.settle(t, st.harmless, c.kind)
		if c.pack != nil && strings.Contains(problems, c.pack.id) {
			st.settle(t, st.flagged, c.kind)
		}
	}

	// A damaged disk: restore and export fail on one line naming an
	// offset inside the damage, and leave no file; --skip-damaged keeps
	// everything else. An undamaged disk restores byte for byte, one of
	// a point whose record is damaged or gone too: the index keeps a
	// sound copy.
	damaged, whole := f.split(want.data, nil)
	out := f.tempDir(t)
	if len(damaged) > 0 {
		x := damaged[rng.Intn(len(damaged))]
		ranges := want.data[x.point][x.disk]
		target := filepath.Join(out, "r.img")
		r := cairn(t, vault, "restore", "--disk", x.disk, x.point, target)
		f.checkFailure(t, r, "restore", x.point, x.disk, ranges)
		noFile(t, "restore", target)
		format := []string{"raw", "qcow2"}[rng.Intn(2)]
		exp := filepath.Join(out, "e."+format)
		r = cairn(t, vault, "export", x.point, "--disk", x.disk, "--format", format, "-o", exp)
		f.checkFailure(t, r, "export --format "+format, x.point, x.disk, ranges)
		noFile(t, "export", exp)
		partial := filepath.Join(out, "partial.img")
		r = cairn(t, vault, "restore", "--skip-damaged", "--disk", x.disk, x.point, partial)
		oneLineError(t, r, "damaged range")
		if !strings.Contains(r.stderr, rangeText(ranges)) {
			t.Errorf("restore --skip-damaged does not list the ranges %s: %q", rangeText(ranges), r.stderr)
		}
		if _, err := os.Stat(partial); err == nil {
			checkPartial(t, partial, f.point(x.point).disk(x.disk).image, ranges)
		} else {
			t.Errorf("restore --skip-damaged wrote no file: %v", err)
		}
	}
	var read []mxPointDisk
	if len(whole) > 0 {
		x := whole[rng.Intn(len(whole))]
		read = append(read, x)
		target := filepath.Join(out, "w.img")
		mustCairn(t, vault, "restore", "--disk", x.disk, x.point, target)
		sameFile(t, f.point(x.point).disk(x.disk).image, target)
	}
	if mount {
		f.checkMount(t, vault, want.data, append(damaged, read...), st)
	}
	if repair {
		f.checkRepair(t, rng, vault, want, st)
	}
}

// checkVerify runs verify (args) with --json on vault and checks that it
// names exactly the damage of want: points, disks and ranges, damaged
// and lost records; that it exits 1 when anything is affected; and that
// anything else it reports is a damaged pack of cs. It returns the
// problems and the notes reported, one a line.
func (f *mxFixture) checkVerify(t *testing.T, vault string, want *mxOutcome, cs []*mxCorruption, args ...string) (problems, notes string) {
	t.Helper()
	what := strings.Join(args, " ")
	r := cairn(t, vault, append(args, "--json")...)
	var rep verifyJSON
	mustJSON(t, r.stdout, &rep)
	gotData, gotRecords := mxDamage{}, map[string]bool{}
	for _, d := range rep.Damaged {
		if d.Record != "" {
			gotRecords[d.Point] = true
			continue
		}
		for _, dd := range d.Disks {
			if gotData[d.Point] == nil {
				gotData[d.Point] = map[string][][2]int64{}
			}
			gotData[d.Point][dd.Disk] = dd.Ranges
		}
	}
	for _, p := range rep.Problems {
		problems += p.What + "\n"
	}
	notes = strings.Join(rep.Notes, "\n")
	if fmt.Sprint(gotData) != fmt.Sprint(want.data) {
		t.Errorf("%s names damage\n  %v\nthe truth is\n  %v\nproblems:\n%s", what, gotData, want.data, problems)
	}
	if fmt.Sprint(gotRecords) != fmt.Sprint(want.badRecords) {
		t.Errorf("%s names damaged records %v, want %v", what, gotRecords, want.badRecords)
	}
	for name := range want.goneRecords {
		if !strings.Contains(problems, "point "+name+" has no record in storage") {
			t.Errorf("%s does not say that %s has lost its record:\n%s", what, name, problems)
		}
	}
	switch {
	case want.harmful() && r.code != 1:
		t.Errorf("%s exits %d on a damaged vault", what, r.code)
	case !want.harmful() && r.code != 0:
		for _, p := range rep.Problems {
			explained := false
			for _, c := range cs {
				explained = explained || c.pack != nil && strings.Contains(p.What, c.pack.id)
			}
			if !explained {
				t.Errorf("%s reports a problem the damage does not explain: %s", what, p.What)
			}
		}
	}
	return problems, notes
}

// mxPointDisk names one disk of one point.
type mxPointDisk struct{ point, disk string }

// split lists the disks of every point, but those of points in skip,
// damaged by dmg or not.
func (f *mxFixture) split(dmg mxDamage, skip map[string]bool) (damaged, whole []mxPointDisk) {
	for _, p := range f.points {
		if skip[p.name] {
			continue
		}
		for _, d := range p.disks {
			if dmg[p.name][d.name] != nil {
				damaged = append(damaged, mxPointDisk{p.name, d.name})
			} else {
				whole = append(whole, mxPointDisk{p.name, d.name})
			}
		}
	}
	return damaged, whole
}

// oneLineJSONError checks that a command run with --json failed with
// exit 1 and its error, naming want, as one line of JSON on stderr.
func oneLineJSONError(t *testing.T, r result, want string) {
	t.Helper()
	var e struct {
		Error    string
		ExitCode int `json:"exit_code"`
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if r.code != 1 || len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &e) != nil || e.ExitCode != 1 ||
		!strings.Contains(e.Error, want) {
		t.Errorf("exit %d, stderr %q; want exit 1 and one line of JSON whose error names %q", r.code, r.stderr, want)
	}
}

func noFile(t *testing.T, what, path string) {
	t.Helper()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed %s left %s", what, path)
	}
}

// repairJSON is what repair --json says.
type repairJSON struct {
	Points     int
	Damaged    []damageJSON
	Dropped    []string
	Healed     []string
	BadRecords []struct{ Point string } `json:"bad_records"`
	OldIndex   string                   `json:"old_index"`
}

// checkRepair runs cairn repair on a vault whose storage is damaged as
// want says, after verify --data has recorded the damage it found. The
// storage issue's promises: the index is rebuilt from storage, so a
// point whose record is gone is dropped; a damaged record is written
// back from the index's sound copy; every damaged point is named with
// its disks and ranges (repair reads no block data: the damage verify
// recorded is carried over); repair exits 1 while points stay damaged.
// Then points lists what storage holds, plain verify names the same
// damage, and an undamaged disk restores byte for byte.
func (f *mxFixture) checkRepair(t *testing.T, rng *rand.Rand, vault string, want *mxOutcome, st *mxStats) {
	t.Helper()
	st.add(&st.repairs, 1)
	r := cairn(t, vault, "repair", "--json")
	var rep repairJSON
	mustJSON(t, r.stdout, &rep)
	after := &mxOutcome{data: mxDamage{}, badRecords: map[string]bool{}, goneRecords: map[string]bool{}}
	for p, disks := range want.data {
		if !want.goneRecords[p] {
			after.data[p] = disks
		}
	}
	gotData := mxDamage{}
	for _, d := range rep.Damaged {
		if d.Record != "" {
			t.Errorf("repair leaves %s with a damaged record (%s); the index held a sound copy", d.Point, d.Record)
			continue
		}
		for _, dd := range d.Disks {
			if gotData[d.Point] == nil {
				gotData[d.Point] = map[string][][2]int64{}
			}
			gotData[d.Point][dd.Disk] = dd.Ranges
		}
	}
	if fmt.Sprint(gotData) != fmt.Sprint(after.data) {
		t.Errorf("repair names damage\n  %v\nthe truth is\n  %v", gotData, after.data)
	}
	if got, exp := fmt.Sprint(rep.Dropped), fmt.Sprint(mxSortedKeys(want.goneRecords)); got != exp {
		t.Errorf("repair drops %s, want %s (the points whose records are gone)", got, exp)
	}
	if len(rep.BadRecords) != 0 {
		t.Errorf("repair leaves bad records %v", rep.BadRecords)
	}
	if n := len(f.points) - len(want.goneRecords); rep.Points != n {
		t.Errorf("repair: %d points, want %d", rep.Points, n)
	}
	for p := range want.badRecords {
		if !want.goneRecords[p] && len(after.data[p]) == 0 && !strings.Contains(fmt.Sprint(rep.Healed), p) {
			t.Errorf("repair does not report %s healed (its record written back): healed %v", p, rep.Healed)
		}
	}
	if exp := map[bool]int{true: 1, false: 0}[len(after.data) > 0]; r.code != exp {
		t.Errorf("repair exits %d, want %d: %s", r.code, exp, r.stderr)
	}

	var names []string
	for _, n := range f.names {
		if !want.goneRecords[n] {
			names = append(names, n)
		}
	}
	if got := pointNames(t, mustCairn(t, vault, "points", "--json")); fmt.Sprint(got) != fmt.Sprint(names) {
		t.Errorf("after repair points lists %v, want %v", got, names)
	}
	f.checkVerify(t, vault, after, nil, "verify")
	if _, whole := f.split(after.data, want.goneRecords); len(whole) > 0 {
		x := whole[rng.Intn(len(whole))]
		target := filepath.Join(f.tempDir(t), "after-repair.img")
		mustCairn(t, vault, "restore", "--disk", x.disk, x.point, target)
		sameFile(t, f.point(x.point).disk(x.disk).image, target)
	}
}

func (p *mxPoint) disk(name string) *mxDisk {
	for _, d := range p.disks {
		if d.name == name {
			return d
		}
	}
	return nil
}

// rangeText is ranges as commands print them: [start, end) ...
func rangeText(ranges [][2]int64) string {
	var parts []string
	for i, r := range ranges {
		if i == 8 {
			break
		}
		parts = append(parts, fmt.Sprintf("[%d, %d)", r[0], r[1]))
	}
	return strings.Join(parts, " ")
}

var offsetRE = regexp.MustCompile(`disk (\S+) at offset (\d+)`)
var mapPageRE = regexp.MustCompile(`map page (\d+)`)

// checkFailure checks that a restore or export of a damaged disk failed
// on one line naming the point and a place inside the damage.
func (f *mxFixture) checkFailure(t *testing.T, r result, what, point, disk string, ranges [][2]int64) {
	t.Helper()
	oneLineError(t, r, point)
	if m := offsetRE.FindStringSubmatch(r.stderr); m != nil {
		off, _ := strconv.ParseInt(m[2], 10, 64)
		if m[1] != disk || !inRanges(ranges, off) {
			t.Errorf("%s %s: fails at disk %s offset %d, outside the damage %v: %q", what, point, m[1], off, ranges, r.stderr)
		}
		return
	}
	if m := mapPageRE.FindStringSubmatch(r.stderr); m != nil {
		pg, _ := strconv.ParseInt(m[1], 10, 64)
		if !inRanges(ranges, pg*mxPageEntries*mxBlock) {
			t.Errorf("%s %s: blames map page %d, outside the damage %v: %q", what, point, pg, ranges, r.stderr)
		}
		return
	}
	t.Errorf("%s %s: the error names no offset or map page: %q", what, point, r.stderr)
}

// pointNames lists the points `points --json` shows.
func pointNames(t *testing.T, out string) []string {
	t.Helper()
	var pts []struct{ Point string }
	mustJSON(t, out, &pts)
	var names []string
	for _, p := range pts {
		names = append(names, p.Point)
	}
	sort.Strings(names)
	return names
}
