package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"path/filepath"
	"strings"
	"testing"
)

// The corruption matrix's trials of the files beside the data: the
// config, the policies and the index.

// checkAllBack checks a vault that should hold every point whole: points
// lists them all, plain verify finds nothing (the data is the fixture's,
// checked whole by the storage trials), a random disk restores byte for
// byte, and (mount) two disks and their guest files read right through
// FUSE. Points are checked only when points is empty: the caller did.
func (f *mxFixture) checkAllBack(t *testing.T, rng *rand.Rand, vault string, points string, mount bool, st *mxStats) {
	t.Helper()
	if points == "" {
		points = mustCairn(t, vault, "points", "--json")
	}
	if got := pointNames(t, points); fmt.Sprint(got) != fmt.Sprint(f.names) {
		t.Errorf("points lists %v, want %v", got, f.names)
	}
	if r := cairn(t, vault, "verify"); r.code != 0 {
		t.Errorf("verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	_, whole := f.split(nil, nil)
	x := whole[rng.Intn(len(whole))]
	target := filepath.Join(f.tempDir(t), "a.img")
	mustCairn(t, vault, "restore", "--disk", x.disk, x.point, target)
	sameFile(t, f.point(x.point).disk(x.disk).image, target)
	if mount {
		f.checkMount(t, vault, nil, []mxPointDisk{whole[rng.Intn(len(whole))], whole[rng.Intn(len(whole))]}, st)
	}
}

// configTrial damages cairn.json: the vault is refused with one line
// (and repair mends it), or works and serves every point right.
func (f *mxFixture) configTrial(t *testing.T, rng *rand.Rand, kind string, st *mxStats) {
	vault := f.copyVault(t)
	what := damageFile(t, rng, vault, "cairn.json", lastWord(kind), false)
	t.Logf("%s: cairn.json %s", kind, what)
	st.count(st.made, kind)
	r := cairn(t, vault, "points", "--json")
	if r.code == 0 {
		st.settle(t, st.harmless, kind)
		f.checkAllBack(t, rng, vault, r.stdout, false, st)
		return
	}
	if strings.Contains(r.stderr, "is not supported by this cairn") {
		// A flipped bit in the format's digit reads as a vault of a
		// newer cairn: refused, and repair refuses it too.
		oneLineJSONError(t, r, "vault format")
		st.settle(t, st.detected, kind)
		return
	}
	if strings.Contains(r.stderr, "belongs to another vault") {
		// A flipped bit in the vault's ID (cairn.json has no checksum)
		// reads as an index bound to another vault: refused with "run
		// cairn repair", which binds the index to the ID again.
		oneLineJSONError(t, r, "run cairn repair")
	} else {
		oneLineJSONError(t, r, "cairn.json")
	}
	st.add(&st.repairs, 1)
	rr := cairn(t, vault, "repair", "--json")
	if rr.code != 0 {
		t.Errorf("points refuses (%q), and repair cannot mend it: exit %d %q", strings.TrimSpace(r.stderr), rr.code, rr.stderr)
		return
	}
	st.settle(t, st.detected, kind)
	f.checkAllBack(t, rng, vault, "", false, st)
}

// policyTrial damages a policy: policy list names it and lists the
// other, and no point is affected.
func (f *mxFixture) policyTrial(t *testing.T, rng *rand.Rand, kind string, st *mxStats) {
	vault := f.copyVault(t)
	i := rng.Intn(len(f.policies))
	name, other := f.policies[i], f.policies[1-i]
	what := damageFile(t, rng, vault, "policies/"+name, lastWord(kind), false)
	t.Logf("%s: policies/%s %s", kind, name, what)
	st.count(st.made, kind)
	list := cairn(t, vault, "policy", "list")
	show := cairn(t, vault, "policy", "show", name)
	switch {
	case kind == "policy-delete":
		// Nothing says which policies there were: it is gone, and only
		// it (the points it made stay).
		if list.code != 0 || strings.Contains(list.stdout, name+" ") || !strings.Contains(list.stdout, other+" ") {
			t.Errorf("policy list after %s was deleted: exit %d\n%s%s", name, list.code, list.stdout, list.stderr)
		}
		oneLineError(t, show, name)
		st.settle(t, st.harmless, kind)
	case list.code == 0:
		// Unharmed: it reads as it was.
		var got struct{ Policy json.RawMessage }
		mustJSON(t, mustCairn(t, vault, "policy", "show", name, "--json"), &got)
		if !bytes.Equal(got.Policy, f.policyJSON[name]) {
			t.Errorf("policy %s damaged reads as\n%s\nwas\n%s", name, got.Policy, f.policyJSON[name])
		}
		st.settle(t, st.harmless, kind)
	default:
		oneLineError(t, list, "policy "+name)
		oneLineError(t, show, name)
		st.settle(t, st.detected, kind)
	}
	mustCairn(t, vault, "policy", "show", other)
	f.checkAllBack(t, rng, vault, "", false, st)
}

// indexTrial damages one file of the index: the vault is refused with
// "run cairn repair", or works, lists every point and serves it right;
// a repair then brings everything back.
func (f *mxFixture) indexTrial(t *testing.T, rng *rand.Rand, kind string, mount bool, st *mxStats) {
	vault := f.copyVault(t)
	parts := strings.Split(kind, "-")
	class, how := parts[1], parts[2]
	var files []string
	for _, p := range f.index {
		base := filepath.Base(p)
		if base == class || strings.HasSuffix(base, "."+class) {
			files = append(files, p)
		}
	}
	if len(files) == 0 {
		t.Fatalf("the index has no %s file: %v", class, f.index)
	}
	file := files[rng.Intn(len(files))]
	what := damageFile(t, rng, vault, file, how, false)
	t.Logf("%s: %s %s", kind, file, what)
	st.count(st.made, kind)
	r := cairn(t, vault, "points", "--json")
	refused := r.code != 0
	if refused {
		oneLineJSONError(t, r, "run cairn repair")
	} else {
		if got := pointNames(t, r.stdout); fmt.Sprint(got) != fmt.Sprint(f.names) {
			t.Errorf("a damaged index lists points %v, want %v", got, f.names)
		}
		// verify --data reads the index whole: a table the open trusted
		// is checked again.
		rv := cairn(t, vault, "verify", "--data", "--json")
		switch {
		case rv.code == 0:
		case strings.Contains(rv.stderr, "run cairn repair"):
			refused = true
		default:
			t.Errorf("a damaged index that opens: verify --data exits %d\n%s%s", rv.code, rv.stdout, rv.stderr)
		}
	}
	switch {
	case refused:
		st.settle(t, st.detected, kind)
	case !refused:
		st.settle(t, st.harmless, kind)
		_, whole := f.split(nil, nil)
		x := whole[rng.Intn(len(whole))]
		target := filepath.Join(f.tempDir(t), "d.img")
		mustCairn(t, vault, "restore", "--disk", x.disk, x.point, target)
		sameFile(t, f.point(x.point).disk(x.disk).image, target)
	}
	st.add(&st.repairs, 1)
	var rep repairJSON
	rr := cairn(t, vault, "repair", "--json")
	mustJSON(t, rr.stdout, &rep)
	if rr.code != 0 || rep.Points != len(f.points) || len(rep.Damaged) != 0 {
		t.Fatalf("repair: exit %d, %d points, damaged %+v: %s", rr.code, rep.Points, rep.Damaged, rr.stderr)
	}
	f.checkAllBack(t, rng, vault, "", mount, st)
}
