package integration

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cairnAt runs the binary as though it were at the time now.
func cairnAt(t *testing.T, vault string, now time.Time, args ...string) string {
	t.Helper()
	cmd := exec.Command(cairnBin, args...)
	cmd.Env = append(os.Environ(), "CAIRN_VAULT="+vault, "CAIRN_NOW="+now.UTC().Format(time.RFC3339), "TZ=Europe/Berlin")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cairn %v: %v", args, err)
	}
	return string(out)
}

// pruneHistory is a year and a half of points at irregular times, across
// daylight-saving changes, month and year ends and ISO week 53 of 2020,
// all in the past (restic measures --keep-within from the newest
// snapshot that is not in the future).
func pruneHistory() []time.Time {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	r := rand.New(rand.NewSource(5))
	t0 := time.Date(2019, 9, 1, 3, 0, 0, 0, berlin)
	var out []time.Time
	for t := t0; len(out) < 20; {
		// restic takes a local time without an offset: leave out the hour
		// that comes twice when summer time ends.
		if back, _ := time.ParseInLocation("2006-01-02 15:04:05", t.Format("2006-01-02 15:04:05"), berlin); back.Equal(t) {
			out = append(out, t)
		}
		// Mostly hours to days apart, now and then weeks.
		step := time.Duration(r.Intn(40)+1) * time.Hour
		if r.Intn(6) == 0 {
			step = time.Duration(r.Intn(20)+3) * 24 * time.Hour
		}
		t = t.Add(step)
	}
	// Points on each side of the end of summer time (2020-10-25 03:00),
	// and around the new year, in ISO week 53 of 2020.
	for _, s := range []string{"2020-10-25T01:30:00+02:00", "2020-10-25T03:30:00+01:00", "2020-12-31T23:50:00+01:00", "2021-01-01T00:10:00+01:00", "2021-01-03T12:00:00+01:00"} {
		tm, _ := time.Parse(time.RFC3339, s)
		out = append(out, tm)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

// TestPruneMatchesRestic backs the same history of times up with cairn
// and restic and compares what prune --dry-run and restic forget
// --dry-run keep under the same rules and time zone.
func TestPruneMatchesRestic(t *testing.T) {
	needTool(t, "restic")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	repo := filepath.Join(dir, "restic")
	src := filepath.Join(dir, "data.img")
	if err := os.WriteFile(src, []byte(strings.Repeat("cairn\n", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	restic := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command("restic", append([]string{"-q", "--no-cache", "-r", repo}, args...)...)
		cmd.Env = append(os.Environ(), "RESTIC_PASSWORD=cairn-test", "TZ=Europe/Berlin")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("restic %v: %v", args, err)
		}
		return out
	}
	restic("init")
	times := pruneHistory()
	if err := exec.Command(cairnBin, "--vault", vault, "init").Run(); err != nil {
		t.Fatal(err)
	}
	for _, tm := range times {
		cairnAt(t, vault, tm, "backup", "--name", "r", src)
		// restic reads --time in the local zone of its process: Berlin.
		restic("backup", "--host", "h", "--time", tm.In(berlin(t)).Format("2006-01-02 15:04:05"), src)
	}
	for _, rules := range [][]string{
		{"--keep-daily", "5", "--keep-weekly", "3", "--keep-monthly", "4", "--keep-yearly", "2"},
		{"--keep-last", "3", "--keep-hourly", "6"},
		{"--keep-within", "30d"},
		{"--keep-weekly", "60"},
		{"--keep-monthly", "3", "--keep-within", "2m"},
	} {
		t.Run(strings.Join(rules, " "), func(t *testing.T) {
			var groups []struct {
				Keep []struct{ Time time.Time } `json:"keep"`
			}
			if err := json.Unmarshal(restic(append([]string{"forget", "--dry-run", "--json"}, rules...)...), &groups); err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, s := range groups[0].Keep {
				want = append(want, s.Time.UTC().Format(time.RFC3339))
			}
			var rep struct {
				Resources []struct {
					Points []struct {
						Time string
						Keep bool
					}
				}
			}
			mustJSON(t, cairnAt(t, vault, times[len(times)-1], append([]string{"prune", "--dry-run", "--json"}, rules...)...), &rep)
			var got []string
			for _, p := range rep.Resources[0].Points {
				if p.Keep {
					tm, _ := time.Parse(time.RFC3339, p.Time)
					got = append(got, tm.UTC().Format(time.RFC3339))
				}
			}
			sort.Strings(want)
			sort.Strings(got)
			// restic before 0.16 does not keep the oldest snapshot when a
			// rule runs out of them (README: Retention rules).
			oldest := times[0].UTC().Format(time.RFC3339)
			if oldResticKeepsNoOldest(t) && len(got) == len(want)+1 && got[0] == oldest && !slices.Contains(want, oldest) {
				want = append([]string{oldest}, want...)
			}
			if !slices.Equal(got, want) {
				t.Errorf("cairn keeps %d points, restic %d:\ncairn  %q\nrestic %q", len(got), len(want), got, want)
			}
		})
	}
}

// oldResticKeepsNoOldest reports whether the restic installed is older
// than 0.16, which added keeping the oldest snapshot.
func oldResticKeepsNoOldest(t *testing.T) bool {
	t.Helper()
	out, err := exec.Command("restic", "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	var major, minor int
	if _, err := fmt.Sscanf(string(out), "restic %d.%d", &major, &minor); err != nil {
		t.Fatalf("restic version %q: %v", out, err)
	}
	return major == 0 && minor < 16
}

func berlin(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// TestPruneBadInput checks each mistake gets one line, exit 2 for a
// wrong command line, and changes nothing.
func TestPruneBadInput(t *testing.T) {
	needTool(t, "mkfs.ext4")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	img := makeExt4(t, dir, "16M", 1<<20)
	mustCairn(t, vault, "init")
	mustCairn(t, vault, "backup", "--name", "a", img)
	before := vaultState(t, vault)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"prune"}, 2, "no retention rule"},
		{[]string{"prune", "--keep-within", "7x"}, 2, "invalid span"},
		{[]string{"prune", "--keep-within", "abc"}, 2, "invalid span"},
		{[]string{"prune", "--keep-daily", "-1"}, 2, "count of 1 or more"},
		{[]string{"prune", "--keep-daily", "many"}, 2, "keep-daily"},
		{[]string{"prune", "--keep-last", "1", "--tz", "Mars/Olympus"}, 2, "unknown time zone"},
		{[]string{"prune", "--keep-last", "1", "nosuch"}, 1, "no points"},
		{[]string{"prune", "--keep-last", "1", "a b"}, 2, "invalid name"},
		{[]string{"gc", "--threshold", "2"}, 2, "share from 0 to 1"},
		{[]string{"pin", "a@1999"}, 1, "no such point"},
		{[]string{"vault", "set", "--capacity", "lots"}, 2, "capacity"},
	} {
		r := cairn(t, vault, c.args...)
		if r.code != c.code || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("cairn %v: exit %d, stderr %q; want exit %d with %q", c.args, r.code, r.stderr, c.code, c.want)
		}
	}
	if after := vaultState(t, vault); after != before {
		t.Errorf("bad input changed the vault")
	}
}

// TestPruneGCPin prunes a chain down to two points and a pinned one, and
// gc gives the space back: the vault ends within 5% of a fresh vault of
// the survivors, which restore byte for byte.
func TestPruneGCPin(t *testing.T) {
	needTool(t, "cmp")
	dir := t.TempDir()
	vault, fresh := filepath.Join(dir, "vault"), filepath.Join(dir, "fresh")
	mustCairn(t, vault, "init", "--chunk-size", "64K")
	mustCairn(t, fresh, "init", "--chunk-size", "64K")
	img := filepath.Join(dir, "disk.img")
	createSized(t, img, 32<<20)
	keep := map[string]string{}
	var points []string
	for i := 0; i < 8; i++ {
		scribble(t, img, int64(10+i), 4, 1<<20, 0, 32<<20)
		p := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "vm", img))
		points = append(points, p)
		c := filepath.Join(dir, fmt.Sprintf("v%d.img", i))
		copyFile(t, img, c)
		keep[p] = c
	}
	pinned := points[1]
	mustCairn(t, vault, "pin", pinned)
	if r := cairn(t, vault, "delete", pinned); r.code != 1 || !strings.Contains(r.stderr, "pinned") {
		t.Errorf("delete of a pinned point: exit %d %q", r.code, r.stderr)
	}
	out := mustCairn(t, vault, "prune", "--keep-last", "2")
	if !strings.Contains(out, "removed 5 of 8 points") || !strings.Contains(out, "pinned") {
		t.Errorf("prune:\n%s", out)
	}
	survivors := []string{pinned, points[6], points[7]}
	for _, p := range survivors {
		mustCairn(t, fresh, "backup", "--name", "vm", keep[p])
	}
	var gc struct {
		BytesFreed int64 `json:"bytes_freed"`
		BytesAfter int64 `json:"bytes_after"`
	}
	mustJSON(t, mustCairn(t, vault, "gc", "--json"), &gc)
	got, want := packBytes(t, vault), packBytes(t, fresh)
	if gc.BytesFreed <= 0 || gc.BytesAfter != got || float64(got) > 1.05*float64(want) {
		t.Errorf("gc: %+v; vault %d bytes of packs, a fresh one of the survivors %d", gc, got, want)
	}
	restored := filepath.Join(dir, "r.img")
	for _, p := range survivors {
		mustCairn(t, vault, "restore", "--force", p, restored)
		sameFile(t, keep[p], restored)
	}
	mustCairn(t, vault, "verify", "--data")
	mustCairn(t, vault, "unpin", pinned)
	if out := mustCairn(t, vault, "prune", "--keep-last", "1"); !strings.Contains(out, "removed 2 of 3") {
		t.Errorf("prune after unpin:\n%s", out)
	}
}

// packBytes sums a vault's packs on disk.
func packBytes(t *testing.T, vault string) int64 {
	t.Helper()
	var n int64
	packs, _ := filepath.Glob(filepath.Join(vault, "packs", "*", "*.pack"))
	for _, p := range packs {
		n += fileSize(t, p)
	}
	return n
}

// TestCapacityCLI fills a vault with a capacity: the backup that would
// pass it stops with one line, nothing is committed, gc gives the space
// back, and reads go on.
func TestCapacityCLI(t *testing.T) {
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	mustCairn(t, vault, "init", "--chunk-size", "64K", "--capacity", "6M")
	img := filepath.Join(dir, "disk.img")
	createSized(t, img, 16<<20)
	scribble(t, img, 1, 3, 1<<20, 0, 16<<20)
	first := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "vm", img))
	before := packBytes(t, vault)
	scribble(t, img, 2, 8, 1<<20, 0, 16<<20)
	r := cairn(t, vault, "backup", "--name", "vm", img)
	oneLineError(t, r, "capacity")
	if out := mustCairn(t, vault, "points"); !strings.Contains(out, "capacity") || strings.Count(out, "vm@") != 1 {
		t.Errorf("points after a backup past the capacity:\n%s", out)
	}
	mustCairn(t, vault, "restore", first, filepath.Join(dir, "r.img"))
	mustCairn(t, vault, "gc")
	if after := packBytes(t, vault); after != before {
		t.Errorf("after gc: %d bytes of packs, %d before the failed backup", after, before)
	}
	if out := mustCairn(t, vault, "stats"); !strings.Contains(out, "of 6.0 MiB") {
		t.Errorf("stats does not show the capacity:\n%s", out)
	}
	mustCairn(t, vault, "vault", "set", "--capacity", "none")
	mustCairn(t, vault, "backup", "--name", "vm", img)
	mustCairn(t, vault, "verify", "--data")
}

// TestKillDuringGC kills gc with SIGKILL at random moments, most of them
// while it compacts: after each kill the vault verifies, every point
// left restores byte for byte, and the next gc gives the space back.
func TestKillDuringGC(t *testing.T) {
	needTool(t, "cmp")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	mustCairn(t, vault, "init", "--chunk-size", "64K")
	img := filepath.Join(dir, "disk.img")
	createSized(t, img, 96<<20)
	scribble(t, img, 1, 96, 1<<20, 0, 96<<20)
	mustCairn(t, vault, "backup", "--name", "vm", img)
	rnd := rand.New(rand.NewSource(time.Now().UnixNano()))
	var took time.Duration
	for i := 0; i < 5; i++ {
		// Make garbage: overwrite a third of the disk, back it up, delete
		// the older point; its pack is then mostly dead.
		scribble(t, img, int64(20+i), 32, 1<<20, 0, 96<<20)
		latest := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "vm", img))
		var pts []struct{ Point string }
		mustJSON(t, mustCairn(t, vault, "points", "--json"), &pts)
		for _, p := range pts {
			if p.Point != latest {
				mustCairn(t, vault, "delete", p.Point)
			}
		}
		if i == 0 {
			start := time.Now()
			mustCairn(t, vault, "gc", "--dry-run")
			took = 3 * time.Since(start)
		}
		cmd := exec.Command(cairnBin, "gc")
		cmd.Env = append(os.Environ(), "CAIRN_VAULT="+vault)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := 20*time.Millisecond + time.Duration(rnd.Int63n(int64(took)))
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		t.Logf("gc killed after %v: %v", delay, err)
		mustCairn(t, vault, "verify", "--data")
		restored := filepath.Join(dir, "r.img")
		mustCairn(t, vault, "restore", "--force", latest, restored)
		sameFile(t, img, restored)
	}
	mustCairn(t, vault, "gc")
	var st struct {
		Reclaimable int64 `json:"reclaimable"`
		Stored      int64 `json:"bytes_stored"`
		Unique      int64 `json:"bytes_unique"`
	}
	mustJSON(t, mustCairn(t, vault, "stats", "--json"), &st)
	// One point of 96 MiB of random data is left: no more than 5% more.
	if st.Reclaimable != 0 || float64(packBytes(t, vault)) > 1.05*96*(1<<20) {
		t.Errorf("after the last gc: %d bytes of packs, %+v", packBytes(t, vault), st)
	}
}

// TestOpenFileOfAPrunedPoint opens a disk file of a point in the mount,
// prunes the point and runs gc through the daemon: stats counts the
// bytes the open file holds, and the file reads the point's exact bytes
// until it is closed.
func TestOpenFileOfAPrunedPoint(t *testing.T) {
	needTool(t, "cmp")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	mustCairn(t, vault, "init", "--chunk-size", "64K")
	img := filepath.Join(dir, "disk.img")
	createSized(t, img, 16<<20)
	scribble(t, img, 1, 8, 1<<20, 0, 16<<20)
	old := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "vm", img))
	oldCopy := filepath.Join(dir, "old.img")
	copyFile(t, img, oldCopy)
	scribble(t, img, 2, 16, 1<<20, 0, 16<<20) // most of it changes
	mustCairn(t, vault, "backup", "--name", "vm", img)

	m := startMount(t, vault)
	f, err := os.Open(filepath.Join(m.dir, "vm", strings.TrimPrefix(old, "vm@"), "disk.raw"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Through the daemon: the point goes, gc runs, the file stays open.
	mustCairn(t, vault, "prune", "--keep-last", "1")
	var gc struct {
		Held int `json:"held"`
	}
	mustJSON(t, mustCairn(t, vault, "gc", "--json"), &gc)
	var st struct {
		Held int64 `json:"held_by_readers"`
	}
	mustJSON(t, mustCairn(t, vault, "stats", "--json"), &st)
	if gc.Held != 1 || st.Held < 1<<20 {
		t.Errorf("gc held %d points, stats says %d bytes held by readers", gc.Held, st.Held)
	}
	got := filepath.Join(dir, "got.img")
	out, err := os.Create(got)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); ; off += int64(len(buf)) {
		n, err := f.ReadAt(buf, off)
		out.Write(buf[:n])
		if err != nil {
			break
		}
	}
	out.Close()
	sameFile(t, oldCopy, got)
}
