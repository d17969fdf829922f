package policy

import (
	"fmt"
	"testing"
	"time"
	_ "time/tzdata" // the zones below, whatever the machine has
)

func zone(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// instant reads an RFC 3339 time; its offset says which occurrence of a
// repeated wall time is meant.
func instant(t testing.TB, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func clock(h, m int) ClockTime { return ClockTime{h, m} }

// The 2026 changes: Europe/Berlin 29 March 02:00 CET -> 03:00 CEST and
// 25 October 03:00 CEST -> 02:00 CET (both at 01:00 UTC);
// America/New_York 8 March 02:00 EST -> 03:00 EDT and 1 November 02:00
// EDT -> 01:00 EST.
func TestNextAt(t *testing.T) {
	cases := []struct {
		name string
		tz   string
		at   []ClockTime
		days []time.Weekday
		from string
		want []string // successive Next, with the local offset
	}{
		{"Berlin: a slot in the spring gap runs at the jump", "Europe/Berlin", []ClockTime{clock(2, 30)}, nil,
			"2026-03-28T00:00:00+01:00",
			[]string{"2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"}},
		{"Berlin: slots of the gap and the jump's own fall together", "Europe/Berlin",
			[]ClockTime{clock(2, 0), clock(2, 15), clock(3, 0), clock(3, 30), clock(1, 59)}, nil,
			"2026-03-29T00:00:00+01:00",
			[]string{"2026-03-29T01:59:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T03:30:00+02:00", "2026-03-30T01:59:00+02:00"}},
		{"Berlin: a slot in the repeated hour runs at its first occurrence", "Europe/Berlin", []ClockTime{clock(2, 30)}, nil,
			"2026-10-24T12:00:00+02:00",
			[]string{"2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"}},
		{"Berlin: around the repeated hour", "Europe/Berlin", []ClockTime{clock(3, 0), clock(2, 59), clock(2, 0), clock(1, 59)}, nil,
			"2026-10-25T00:00:00+02:00",
			[]string{"2026-10-25T01:59:00+02:00", "2026-10-25T02:00:00+02:00", "2026-10-25T02:59:00+02:00", "2026-10-25T03:00:00+01:00", "2026-10-26T01:59:00+01:00"}},
		{"Berlin: from inside the repeated hour, the second occurrence is not a slot", "Europe/Berlin", []ClockTime{clock(2, 30)}, nil,
			"2026-10-25T02:10:00+01:00", // the second 02:10
			[]string{"2026-10-26T02:30:00+01:00"}},
		{"New York: a slot in the spring gap runs at the jump", "America/New_York", []ClockTime{clock(2, 30)}, nil,
			"2026-03-07T12:00:00-05:00",
			[]string{"2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"}},
		{"New York: a slot in the repeated hour runs at its first occurrence", "America/New_York", []ClockTime{clock(1, 30)}, nil,
			"2026-10-31T12:00:00-04:00",
			[]string{"2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"}},
		{"New York: around the repeated hour", "America/New_York", []ClockTime{clock(1, 0), clock(1, 59), clock(2, 0)}, nil,
			"2026-11-01T00:00:00-04:00",
			[]string{"2026-11-01T01:00:00-04:00", "2026-11-01T01:59:00-04:00", "2026-11-01T02:00:00-05:00", "2026-11-02T01:00:00-05:00"}},
		{"Lord Howe: a half-hour gap", "Australia/Lord_Howe", []ClockTime{clock(2, 15), clock(2, 30)}, nil,
			"2026-10-04T00:00:00+10:30",
			[]string{"2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"}},
		{"Apia: a date the zone skipped runs its slots at the next midnight", "Pacific/Apia", []ClockTime{clock(10, 0), clock(20, 0)}, nil,
			"2011-12-29T12:00:00-10:00",
			[]string{"2011-12-29T20:00:00-10:00", "2011-12-31T00:00:00+14:00", "2011-12-31T10:00:00+14:00"}},
		{"Cairo: a gap at midnight, on a Friday", "Africa/Cairo", []ClockTime{clock(0, 0), clock(0, 30), clock(1, 30)}, []time.Weekday{time.Friday},
			"2026-04-23T12:00:00+02:00",
			[]string{"2026-04-24T01:00:00+03:00", "2026-04-24T01:30:00+03:00", "2026-05-01T00:00:00+03:00"}},
		{"strictly after: from a slot to the next", "UTC", []ClockTime{clock(23, 30)}, nil,
			"2026-12-31T23:30:00Z",
			[]string{"2027-01-01T23:30:00Z", "2027-01-02T23:30:00Z"}},
		{"year end", "UTC", []ClockTime{clock(0, 0)}, nil,
			"2026-12-31T23:59:59Z",
			[]string{"2027-01-01T00:00:00Z", "2027-01-02T00:00:00Z"}},
		{"month end, not a leap year", "Europe/Berlin", []ClockTime{clock(12, 0)}, nil,
			"2027-02-28T12:00:00+01:00",
			[]string{"2027-03-01T12:00:00+01:00"}},
		{"month end, a leap year", "Europe/Berlin", []ClockTime{clock(12, 0)}, nil,
			"2028-02-28T13:00:00+01:00",
			[]string{"2028-02-29T12:00:00+01:00", "2028-03-01T12:00:00+01:00"}},
		{"order of at does not matter", "UTC", []ClockTime{clock(14, 0), clock(2, 0)}, nil,
			"2026-11-21T01:00:00Z",
			[]string{"2026-11-21T02:00:00Z", "2026-11-21T14:00:00Z", "2026-11-22T02:00:00Z"}},
		{"Mondays across the year end", "Europe/Berlin", []ClockTime{clock(2, 0)}, []time.Weekday{time.Monday},
			"2026-12-31T12:00:00+01:00", // a Thursday
			[]string{"2027-01-04T02:00:00+01:00", "2027-01-11T02:00:00+01:00"}},
		{"week ends", "UTC", []ClockTime{clock(9, 0)}, []time.Weekday{time.Sunday, time.Saturday},
			"2026-11-20T09:00:00Z", // a Friday
			[]string{"2026-11-21T09:00:00Z", "2026-11-22T09:00:00Z", "2026-11-28T09:00:00Z"}},
		{"days are local: the gap's Sunday", "Europe/Berlin", []ClockTime{clock(2, 30)}, []time.Weekday{time.Sunday},
			"2026-03-22T03:00:00+01:00",
			[]string{"2026-03-29T03:00:00+02:00", "2026-04-05T02:30:00+02:00"}},
		{"days are local, not UTC", "America/New_York", []ClockTime{clock(22, 0)}, []time.Weekday{time.Friday},
			"2026-11-20T00:00:00Z", // Thursday evening in New York
			[]string{"2026-11-20T22:00:00-05:00", "2026-11-27T22:00:00-05:00"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := Schedule{At: c.at, Days: c.days, TZ: c.tz}
			if err := s.Check(); err != nil {
				t.Fatal(err)
			}
			loc := zone(t, c.tz)
			cur := instant(t, c.from)
			for i, w := range c.want {
				next := s.Next(cur)
				if want := instant(t, w); !next.Equal(want) {
					t.Fatalf("Next #%d after %s = %s, want %s", i+1, cur.In(loc).Format(time.RFC3339), next.Format(time.RFC3339), w)
				}
				if next.Location().String() != loc.String() {
					t.Errorf("Next is in %s, want %s", next.Location(), loc)
				}
				if p := s.Prev(next); !p.Equal(next) {
					t.Errorf("Prev(%s) = %s, want the slot itself", w, p.Format(time.RFC3339))
				}
				cur = next
			}
		})
	}
}

// Next and Prev agree everywhere: there is no slot between Prev(t) and
// Next(t) but t's, and every slot is found by both.
func TestNextPrevAgree(t *testing.T) {
	cases := []struct {
		s       Schedule
		windows []string // 3 days from each
	}{
		{Schedule{At: []ClockTime{clock(2, 30)}, TZ: "Europe/Berlin"}, []string{"2026-03-28T00:00:00Z", "2026-10-24T00:00:00Z"}},
		{Schedule{At: []ClockTime{clock(0, 0), clock(1, 30), clock(2, 0), clock(2, 30), clock(3, 0), clock(23, 59)}, TZ: "America/New_York"},
			[]string{"2026-03-07T00:00:00Z", "2026-10-31T00:00:00Z"}},
		{Schedule{At: []ClockTime{clock(2, 15)}, Days: []time.Weekday{time.Sunday}, TZ: "Australia/Lord_Howe"},
			[]string{"2026-04-03T00:00:00Z", "2026-10-02T00:00:00Z"}},
		{Schedule{At: []ClockTime{clock(0, 0), clock(0, 30), clock(12, 0)}, TZ: "Africa/Cairo"}, []string{"2026-04-22T00:00:00Z", "2026-10-28T00:00:00Z"}},
		{Schedule{At: []ClockTime{clock(10, 0), clock(23, 59)}, TZ: "Pacific/Apia"}, []string{"2011-12-28T00:00:00Z"}},
		{Schedule{Every: 90 * time.Minute, TZ: "Europe/Berlin"}, []string{"2026-10-24T00:00:00Z"}},
	}
	for _, c := range cases {
		s := c.s
		for _, w := range c.windows {
			start := instant(t, w)
			for x := start; x.Before(start.Add(3 * 24 * time.Hour)); x = x.Add(11*time.Minute + 7*time.Second) {
				next, prev := s.Next(x), s.Prev(x)
				if !next.After(x) || prev.After(x) {
					t.Fatalf("%s at %s: Prev %s, Next %s", s, x, prev, next)
				}
				if p := s.Prev(next.Add(-time.Nanosecond)); !p.Equal(prev) {
					t.Fatalf("%s at %s: a slot %s between Prev %s and Next %s", s, x, p, prev, next)
				}
				if n := s.Next(prev); !n.Equal(next) {
					t.Fatalf("%s at %s: Next(Prev) = %s, want Next %s", s, x, n, next)
				}
			}
		}
	}
}

// Every schedules are a grid of elapsed time: the same slots whatever
// the time zone, the DST changes or where one starts counting.
func TestNextEvery(t *testing.T) {
	cases := []struct {
		every time.Duration
		tz    string
		from  string
		n     int // slots in the 24 hours from from
	}{
		{time.Hour, "Europe/Berlin", "2026-03-28T12:00:00Z", 24},
		{time.Hour, "Europe/Berlin", "2026-10-24T12:00:00Z", 24},
		{90 * time.Minute, "America/New_York", "2026-11-01T00:00:00Z", 16},
		{90 * time.Minute, "America/New_York", "2026-03-08T00:00:00Z", 16},
		{6 * time.Hour, "Local", "2026-11-21T10:00:00Z", 4},
		{7 * time.Hour, "UTC", "2026-11-21T10:00:00Z", 3}, // 24/7: 3 or 4; this window holds 3
		{time.Minute, "Europe/Berlin", "2026-03-29T00:00:00Z", 1440},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s %s %s", formatDuration(c.every), c.tz, c.from), func(t *testing.T) {
			s := Schedule{Every: c.every, TZ: c.tz}
			from := instant(t, c.from)
			var slots []time.Time
			for cur := s.Next(from.Add(-time.Nanosecond)); cur.Before(from.Add(24 * time.Hour)); cur = s.Next(cur) {
				slots = append(slots, cur)
			}
			if len(slots) != c.n {
				t.Fatalf("%d slots in 24h, want %d", len(slots), c.n)
			}
			e := int64(c.every / time.Second)
			for i, sl := range slots {
				if sl.Unix()%e != 0 || sl.Nanosecond() != 0 {
					t.Errorf("slot %s is not a multiple of %s since the epoch", sl, c.every)
				}
				if i > 0 && sl.Sub(slots[i-1]) != c.every {
					t.Errorf("slots %s and %s are %s apart, want %s", slots[i-1], sl, sl.Sub(slots[i-1]), c.every)
				}
			}
		})
	}
	s := Schedule{Every: 6 * time.Hour, TZ: "UTC"}
	for _, c := range []struct{ at, next, prev string }{
		{"2026-11-21T06:00:00Z", "2026-11-21T12:00:00Z", "2026-11-21T06:00:00Z"},
		{"2026-11-21T05:59:59Z", "2026-11-21T06:00:00Z", "2026-11-21T00:00:00Z"},
		{"1969-12-31T23:00:00Z", "1970-01-01T00:00:00Z", "1969-12-31T18:00:00Z"},
	} {
		at := instant(t, c.at)
		if got := s.Next(at); !got.Equal(instant(t, c.next)) {
			t.Errorf("Next(%s) = %s, want %s", c.at, got, c.next)
		}
		if got := s.Prev(at); !got.Equal(instant(t, c.prev)) {
			t.Errorf("Prev(%s) = %s, want %s", c.at, got, c.prev)
		}
	}
}

func TestNextInvalidSchedule(t *testing.T) {
	for _, s := range []Schedule{{}, {Every: time.Second}, {At: []ClockTime{clock(2, 0)}, TZ: "Mars/Olympus"}} {
		if n, p := s.Next(time.Now()), s.Prev(time.Now()); !n.IsZero() || !p.IsZero() {
			t.Errorf("%+v: Next %s, Prev %s; want zero times", s, n, p)
		}
	}
}
