package snapshot

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// history makes points of one resource at the given local times
// ("2006-01-02 15:04") in loc, oldest first as given.
func history(t *testing.T, loc *time.Location, times ...string) []*Point {
	t.Helper()
	var out []*Point
	for i, s := range times {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &Point{Resource: "r", ID: fmt.Sprintf("%s-%03d", tm.UTC().Format(idLayout), i+2), Time: tm.UTC()})
	}
	return out
}

// kept lists the local times of the points kept, newest first.
func kept(ds []Decision, loc *time.Location) []string {
	var out []string
	for _, d := range ds {
		if d.Keep {
			out = append(out, d.Point.Time.In(loc).Format("2006-01-02 15:04"))
		}
	}
	return out
}

func TestRetentionRules(t *testing.T) {
	utc := time.UTC
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	// Two points a day at 01:30 and 13:30 from 2026-12-28 to 2027-01-03,
	// across a month, a year and (2026 has 53 ISO weeks) week 53.
	var yearEnd []string
	for d := 28; d <= 31; d++ {
		yearEnd = append(yearEnd, fmt.Sprintf("2026-12-%02d 01:30", d), fmt.Sprintf("2026-12-%02d 13:30", d))
	}
	for d := 1; d <= 3; d++ {
		yearEnd = append(yearEnd, fmt.Sprintf("2027-01-%02d 01:30", d), fmt.Sprintf("2027-01-%02d 13:30", d))
	}
	cases := []struct {
		name  string
		loc   *time.Location
		times []string
		rules Rules
		want  []string // kept, newest first
	}{
		{"daily across the year end", utc, yearEnd, Rules{Daily: 3},
			[]string{"2027-01-03 13:30", "2027-01-02 13:30", "2027-01-01 13:30"}},
		{"weekly: ISO week 53 of 2026 ends on Sunday 2027-01-03", utc, yearEnd, Rules{Weekly: 2},
			// Mon 2026-12-28 .. Sun 2027-01-03 is all week 2026-W53: one
			// week, so the rule runs out and keeps the oldest too.
			[]string{"2027-01-03 13:30", "2026-12-28 01:30"}},
		{"monthly", utc, yearEnd, Rules{Monthly: 2},
			[]string{"2027-01-03 13:30", "2026-12-31 13:30"}},
		{"yearly with too few years keeps the oldest", utc, yearEnd, Rules{Yearly: 5},
			[]string{"2027-01-03 13:30", "2026-12-31 13:30", "2026-12-28 01:30"}},
		{"hourly", utc, []string{"2026-05-01 10:05", "2026-05-01 10:55", "2026-05-01 11:10", "2026-05-01 11:50", "2026-05-01 12:00"},
			Rules{Hourly: 2}, []string{"2026-05-01 12:00", "2026-05-01 11:50"}},
		{"last", utc, yearEnd, Rules{Last: 3},
			[]string{"2027-01-03 13:30", "2027-01-03 01:30", "2027-01-02 13:30"}},
		{"within 1d of the newest: strictly less than a day before it", utc, yearEnd, Rules{Within: Span{Days: 1}},
			[]string{"2027-01-03 13:30", "2027-01-03 01:30"}},
		{"rules count independently", utc, yearEnd, Rules{Last: 1, Daily: 2},
			[]string{"2027-01-03 13:30", "2027-01-02 13:30"}},
		// Berlin leaves summer time at 03:00 on 2026-10-25: the day has 25
		// hours, and 02:30 comes twice. Points every hour of local time.
		{"daily across the end of summer time", berlin,
			[]string{"2026-10-24 23:30", "2026-10-25 00:30", "2026-10-25 01:30", "2026-10-25 02:30", "2026-10-25 03:30",
				"2026-10-25 23:30", "2026-10-26 00:30"},
			Rules{Daily: 2}, []string{"2026-10-26 00:30", "2026-10-25 23:30"}},
		{"hourly across the start of summer time", berlin,
			// 2026-03-29: 02:00 does not exist; 01:30 then 03:30 are an hour apart.
			[]string{"2026-03-29 00:45", "2026-03-29 01:30", "2026-03-29 03:30", "2026-03-29 03:50"},
			Rules{Hourly: 3}, []string{"2026-03-29 03:50", "2026-03-29 01:30", "2026-03-29 00:45"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.rules.Location = c.loc
			got := kept(c.rules.Apply(history(t, c.loc, c.times...)), c.loc)
			if !slices.Equal(got, c.want) {
				t.Errorf("kept %q,\nwant %q", got, c.want)
			}
		})
	}
}

func TestRetentionNewestAndPinnedAlwaysKept(t *testing.T) {
	pts := history(t, time.UTC, "2026-01-01 10:00", "2026-02-01 10:00", "2026-03-01 10:00", "2026-04-01 10:00")
	pts[1].Pinned = true
	ds := Rules{Within: Span{Hours: 1}, Location: time.UTC}.Apply(pts)
	got := kept(ds, time.UTC)
	if want := []string{"2026-04-01 10:00", "2026-02-01 10:00"}; !slices.Equal(got, want) {
		t.Fatalf("kept %q, want %q", got, want)
	}
	for _, d := range ds {
		r := strings.Join(d.Reasons, ",")
		switch d.Point {
		case pts[3]:
			if !strings.Contains(r, "newest") {
				t.Errorf("newest point's reasons %q", r)
			}
		case pts[1]:
			if r != "pinned" {
				t.Errorf("pinned point's reasons %q", r)
			}
		}
	}
	if err := (Rules{}).Check(); err == nil {
		t.Fatal("no rules: no error")
	}
}

func TestParseSpan(t *testing.T) {
	for in, want := range map[string]Span{"7d": {Days: 7}, "12h": {Hours: 12}, "2w": {Days: 14}, "1y6m": {Years: 1, Months: 6},
		"1y2m3d4h": {1, 2, 3, 4}} {
		if got, err := ParseSpan(in); err != nil || got != want {
			t.Errorf("ParseSpan(%q) = %+v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "7", "d", "7x", "-1d", "0d", "1.5d", "7d3"} {
		if _, err := ParseSpan(bad); err == nil {
			t.Errorf("ParseSpan(%q): no error", bad)
		}
	}
}
