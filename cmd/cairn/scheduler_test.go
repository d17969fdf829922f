package main

import (
	"context"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/snapshot"
	"github.com/cairn-backup/cairn/snapshot/policy"
)

// schedClock is the time the scheduler, the vault, the runs and the
// job manager see.
type schedClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *schedClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *schedClock) Set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

// testJobs is the daemon's job manager, with the scheduler's jobs going
// into it as they do in the daemon (managerJobs).
type testJobs struct {
	managerJobs
}

func newTestJobs(clock *schedClock) *testJobs {
	return &testJobs{managerJobs{ctx: context.Background(), m: &jobManager{clock: clock.Now, keep: 100000}}}
}

// waitAll waits for every job started but those of the policy named
// busy (whose run the test holds).
func (j *testJobs) waitAll(t *testing.T, busy string) {
	for _, jb := range j.m.list(true) {
		v := jb.view(false)
		if v.State == jobSkipped || v.Target == busy {
			continue
		}
		select {
		case <-jb.ended:
			if v := jb.view(false); v.State != jobSucceeded {
				t.Fatalf("run of %s at %v: %s %s", v.Target, v.Start, v.State, v.Error)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("run of %s at %v does not end", v.Target, v.Start)
		}
	}
}

// times lists when the policy's runs (or skipped runs) started.
func (j *testJobs) times(name string, skipped bool) []string {
	var out []string
	for _, jb := range j.m.list(true) {
		v := jb.view(false)
		if v.Kind != "run" || v.Trigger != triggerSchedule {
			panic("a scheduled job is " + v.Kind + " " + v.Trigger)
		}
		if v.Target == name && (v.State == jobSkipped) == skipped {
			out = append(out, v.Start.UTC().Format("01-02T15:04Z"))
		}
	}
	return out
}

// TestSchedulerTwoWeeks runs three policies across two simulated weeks
// of a fake clock, ticking every five minutes, with the end of summer
// time (Berlin, 2026-10-25), the daemon down for two days and started
// again, and a run held up past its policy's next slot. Every run's time
// is checked against a worked list, and each policy's points against its
// retention after every run.
func TestSchedulerTwoWeeks(t *testing.T) {
	ctx := context.Background()
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 10, 19, 0, 0, 0, 0, berlin) // a Monday, 2026-10-18T22:00Z
	clock := &schedClock{now: t0}
	dir := t.TempDir()
	vaultDir := filepath.Join(dir, "vault")
	if err := snapshot.Init(vaultDir, snapshot.Config{BlockSize: 64 << 10}, t0); err != nil {
		t.Fatal(err)
	}
	v, err := snapshot.Open(vaultDir, snapshot.Options{Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	st := v.Store().Storage()

	// A disk per policy, changed a little before each tick.
	rnd := rand.New(rand.NewSource(1))
	disks := map[string]string{}
	for _, name := range []string{"six", "nightly", "mwf"} {
		p := filepath.Join(dir, name+".img")
		b := make([]byte, 512<<10)
		rnd.Read(b)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		disks[name] = p
	}
	hold := filepath.Join(dir, "hold") // while it exists, mwf's pre-hook waits
	policies := []*policy.Policy{
		{Name: "six", Sources: []policy.Source{{Path: disks["six"]}}, Schedule: policy.Schedule{Every: 6 * time.Hour},
			Retention: snapshot.Rules{Last: 3}},
		{Name: "nightly", Sources: []policy.Source{{Path: disks["nightly"]}},
			Schedule:  policy.Schedule{At: []policy.ClockTime{{Hour: 2, Minute: 30}}, TZ: "Europe/Berlin"},
			Retention: snapshot.Rules{Daily: 5}},
		{Name: "mwf", Sources: []policy.Source{{Path: disks["mwf"]}},
			Schedule: policy.Schedule{At: []policy.ClockTime{{Hour: 9}, {Hour: 21}},
				Days: []time.Weekday{time.Monday, time.Wednesday, time.Friday}, TZ: "Europe/Berlin"},
			Retention: snapshot.Rules{Last: 2, Weekly: 2},
			PreHook:   []string{"/bin/sh", "-c", "while [ -e " + hold + " ]; do sleep 0.02; done"}},
	}
	for _, p := range policies {
		p.Created, p.Updated = t0, t0
		if err := policy.Save(ctx, st, p); err != nil {
			t.Fatal(err)
		}
	}
	jobs := newTestJobs(clock)
	newSched := func() *scheduler {
		return newScheduler(st, &policyRunner{v: v, getenv: func(string) string { return "" }, clock: clock.Now, gcShare: defaultGCShare}, jobs, t.Logf)
	}
	s := newSched()

	down, up := time.Date(2026, 10, 28, 10, 0, 0, 0, time.UTC), time.Date(2026, 10, 30, 7, 0, 0, 0, time.UTC)
	holdFrom, holdTo := time.Date(2026, 10, 21, 6, 55, 0, 0, time.UTC), time.Date(2026, 10, 21, 20, 0, 0, 0, time.UTC)
	end := t0.AddDate(0, 0, 14)
	for now := t0; now.Before(end); now = now.Add(5 * time.Minute) {
		if !now.Before(down) && now.Before(up) {
			continue // the daemon is down
		}
		if now.Equal(up) {
			s = newSched() // a new daemon: what it knows comes from storage
		}
		if now.Equal(holdFrom) {
			os.WriteFile(hold, nil, 0o600)
		}
		clock.Set(now)
		for _, p := range disks {
			f, _ := os.OpenFile(p, os.O_WRONLY, 0)
			b := make([]byte, 4096)
			rnd.Read(b)
			f.WriteAt(b, rnd.Int63n(128)*4096)
			f.Close()
		}
		s.tick(ctx, now)
		if now.Equal(holdTo) {
			os.Remove(hold)
		}
		busy := ""
		if !now.Before(holdFrom) && now.Before(holdTo) {
			busy = "mwf"
		}
		jobs.waitAll(t, busy)
		checkRetention(t, v, policies, jobs)
	}

	// six: every 6 h of elapsed time (00, 06, 12, 18 UTC) from the first
	// slot after its creation; the eight slots missed while the daemon
	// was down give one run, for the latest, when it comes back.
	var six []string
	for at := time.Date(2026, 10, 19, 0, 0, 0, 0, time.UTC); at.Before(end); at = at.Add(6 * time.Hour) {
		switch {
		case !at.Before(down) && at.Before(up):
			continue
		}
		six = append(six, at.Format("01-02T15:04Z"))
	}
	six = append(six, "10-30T07:00Z")
	slices.Sort(six)
	if got := jobs.times("six", false); !slices.Equal(got, six) {
		t.Errorf("six ran at\n%q,\nwant\n%q", got, six)
	}
	// nightly: 02:30 local: 00:30Z in summer time, 01:30Z after it; on
	// 10-25, when 02:30 comes twice, once. Down 10-28 10:00Z to 10-30
	// 07:00Z: the 10-29 and 10-30 runs are one, at 07:00Z.
	nightly := []string{"10-19T00:30Z", "10-20T00:30Z", "10-21T00:30Z", "10-22T00:30Z", "10-23T00:30Z", "10-24T00:30Z",
		"10-25T00:30Z", "10-26T01:30Z", "10-27T01:30Z", "10-28T01:30Z", "10-30T07:00Z", "10-31T01:30Z", "11-01T01:30Z"}
	if got := jobs.times("nightly", false); !slices.Equal(got, nightly) {
		t.Errorf("nightly ran at\n%q,\nwant\n%q", got, nightly)
	}
	// mwf: 09:00 and 21:00 local on Mondays, Wednesdays and Fridays. The
	// run of Wednesday 10-21 09:00 is held up until after 21:00: that
	// slot is skipped. Friday 10-30 09:00 falls while the daemon is down
	// (10-28 21:00 too): one run at 07:00Z... which is before 09:00 local,
	// so only 10-28 21:00 is missed and run then.
	mwf := []string{"10-19T07:00Z", "10-19T19:00Z", "10-21T07:00Z", "10-23T07:00Z", "10-23T19:00Z",
		"10-26T08:00Z", "10-26T20:00Z", "10-28T08:00Z", "10-30T07:00Z", "10-30T08:00Z", "10-30T20:00Z"}
	if got := jobs.times("mwf", false); !slices.Equal(got, mwf) {
		t.Errorf("mwf ran at\n%q,\nwant\n%q", got, mwf)
	}
	if got := jobs.times("mwf", true); !slices.Equal(got, []string{"10-21T19:00Z"}) {
		t.Errorf("mwf skipped %q, want the 10-21 21:00 run", got)
	}
	// The held run, freeze hook done, made an application-consistent
	// point; every point records its policy.
	points, _ := v.Points("mwf")
	for _, p := range points {
		if p.Trigger != "policy mwf" || p.Consistency != snapshot.ConsistencyApplication {
			t.Errorf("%s: trigger %q, consistency %q", p.Name(), p.Trigger, p.Consistency)
		}
	}
	if strings.Count(strings.Join(jobs.times("mwf", false), " "), "10-21") != 1 {
		t.Error("the held run of 10-21 ran more than once")
	}
	// mwf keeps its last 2 points and the newest of the last 2 ISO weeks.
	var got []string
	for _, p := range points {
		got = append(got, p.Time.UTC().Format("01-02T15:04Z"))
	}
	if want := []string{"10-23T19:00Z", "10-30T08:00Z", "10-30T20:00Z"}; !slices.Equal(got, want) {
		t.Errorf("mwf keeps %q, want %q", got, want)
	}
}

// checkRetention checks after each tick that every policy's points are
// what its rules keep of its runs so far: six the last 3, nightly the
// newest of each of the last 5 days, mwf the last 2 and the newest of
// each of the last 2 weeks.
func checkRetention(t *testing.T, v *snapshot.Vault, policies []*policy.Policy, jobs *testJobs) {
	t.Helper()
	for _, p := range policies {
		points, err := v.Points(p.Name)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, pt := range points {
			got = append(got, pt.Time.UTC().Format("01-02T15:04Z"))
		}
		ran := jobs.times(p.Name, false)
		var want []string
		switch p.Name {
		case "six":
			want = ran[max(0, len(ran)-3):]
		case "nightly":
			want = ran[max(0, len(ran)-5):] // one run a day
		}
		if want != nil && !slices.Equal(got, want) {
			t.Fatalf("%s keeps %q after runs %q", p.Name, got, ran)
		}
	}
}

func TestSplitWords(t *testing.T) {
	for in, want := range map[string][]string{
		"/usr/bin/freeze --all":   {"/usr/bin/freeze", "--all"},
		`sh -c 'echo "a b" > /x'`: {"sh", "-c", `echo "a b" > /x`},
		`a "b c" d\ e`:            {"a", "b c", "d e"},
		`x "q\"uote"`:             {"x", `q"uote`},
		"  spaced   out  ":        {"spaced", "out"},
		`''`:                      {""},
	} {
		got, err := splitWords(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("splitWords(%q) = %q, %v; want %q", in, got, err, want)
		}
		if back, err := splitWords(quoteWords(got)); err != nil || !slices.Equal(back, got) {
			t.Errorf("quoteWords(%q) = %q reads back as %q", got, quoteWords(got), back)
		}
	}
	for _, bad := range []string{"", "   ", `a 'b`, `a "b`} {
		if _, err := splitWords(bad); err == nil {
			t.Errorf("splitWords(%q): no error", bad)
		}
	}
}
