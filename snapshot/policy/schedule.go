package policy

import (
	"fmt"
	"slices"
	"sync"
	"time"
)

// This schedule is hand-written rather than taken from robfig/cron: cron
// v3 skips a job whose time falls in a spring-forward gap (upstream PR
// #541 is still open), and a backup that silently does not happen is
// what this product must never do.

// Schedule says when a policy runs: Every an interval, or At times of
// day, on Days (every day when empty), in TZ.
//
// Slots are the instants a schedule names; Next and Prev find them.
//
//   - Every: the multiples of Every since the Unix epoch (UTC), whatever
//     TZ says. Slots are a fixed grid of elapsed time: exactly 24h/Every
//     of them in any 24 hours, across DST changes and restarts alike.
//     "every 24h" is therefore midnight UTC; use At for a time of day.
//   - At: for each local date in TZ whose weekday is in Days, and each
//     time W in At, one slot: the first instant at which the clock in TZ
//     reads W or later on that date. A W that occurs once is that
//     instant. A W that the clock skips (spring forward: 02:30 when
//     02:00 jumps to 03:00) is the instant of the jump, 03:00 new time:
//     the first moment the clock has passed W; it runs, never skipped,
//     and slots of the gap that fall together run once. A W that occurs
//     twice (fall back: 02:30 when 03:00 goes back to 02:00) is its first
//     occurrence, and runs once.
//
// The slot instant rises with the local date and time it stands for, so
// slots are found in order by walking dates and times in order.
//
// Why the jump, not time.Date's normalization of a skipped wall time:
// that normalization depends on the zone. In Europe/Berlin it gives
// 03:30 for 02:30, which runs a 02:30 slot after a 03:15 one and merges
// it with a 03:30 one; in America/New_York it gives 01:30 EST, an hour
// before the clock ever reads 02:30. The jump is the same rule
// everywhere, keeps slots in order, and is what ISC cron does ("jobs
// that would have run in the interval that has been skipped will be run
// immediately").
type Schedule struct {
	Every time.Duration
	At    []ClockTime
	Days  []time.Weekday
	// TZ is an IANA zone name, or LocalTZ (or "") for the daemon's local
	// zone. It places At slots and reckons retention periods.
	TZ string
}

// ClockTime is a time of day, to the minute.
type ClockTime struct {
	Hour, Minute int
}

func (c ClockTime) String() string { return fmt.Sprintf("%02d:%02d", c.Hour, c.Minute) }
func (c ClockTime) minutes() int   { return c.Hour*60 + c.Minute }
func (c ClockTime) valid() bool    { return c.Hour >= 0 && c.Hour < 24 && c.Minute >= 0 && c.Minute < 60 }

// Location loads TZ; an empty TZ or LocalTZ is time.Local.
func (s Schedule) Location() (*time.Location, error) {
	switch s.TZ {
	case "", LocalTZ:
		return time.Local, nil
	}
	if loc, ok := zones.Load(s.TZ); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(s.TZ)
	if err != nil {
		return nil, invalidf("time zone %q: unknown (use an IANA name such as Europe/Berlin, or UTC or Local)", s.TZ)
	}
	zones.Store(s.TZ, loc)
	return loc, nil
}

// zones caches the zones Location loaded, by name: time.LoadLocation
// reads and parses a file each time, and Next and Prev need the zone at
// every call. Like time.Local, a zone is read once per process; it is
// immutable data, not state.
var zones sync.Map

// Check validates the schedule; every error wraps ErrInvalid.
func (s Schedule) Check() error {
	_, err := s.resolve()
	return err
}

// resolve checks the schedule and loads its zone.
func (s Schedule) resolve() (*time.Location, error) {
	switch {
	case s.Every != 0 && len(s.At) > 0:
		return nil, invalidf("schedule: give every or at, not both")
	case s.Every != 0 && len(s.Days) > 0:
		return nil, invalidf("schedule: days apply to at times, not to every")
	case s.Every == 0 && len(s.At) == 0:
		if len(s.Days) > 0 {
			return nil, invalidf("schedule: days without at: give the times of day to run (e.g. at 02:00)")
		}
		return nil, invalidf("schedule: give every (e.g. 6h) or at (e.g. 02:00)")
	}
	if s.Every != 0 {
		if err := checkEvery(s.Every); err != nil {
			return nil, err
		}
	}
	seen := map[int]bool{}
	for _, c := range s.At {
		if !c.valid() {
			return nil, invalidf("at %02d:%02d: not a time of day", c.Hour, c.Minute)
		}
		if seen[c.minutes()] {
			return nil, invalidf("at %s given twice", c)
		}
		seen[c.minutes()] = true
	}
	var days [7]bool
	for _, d := range s.Days {
		if d < time.Sunday || d > time.Saturday {
			return nil, invalidf("days: %d is not a day of the week", int(d))
		}
		if days[d] {
			return nil, invalidf("days: %s given twice", dayName(d))
		}
		days[d] = true
	}
	return s.Location()
}

func checkEvery(d time.Duration) error {
	switch {
	case d < MinEvery:
		return invalidf("every %s: the shortest interval is %s", formatDuration(d), formatDuration(MinEvery))
	case d%time.Second != 0:
		return invalidf("every %s: give whole seconds", d)
	}
	return nil
}

// Next returns the first slot strictly after after, in TZ; the zero
// Time for a schedule that Check refuses (it never runs).
func (s Schedule) Next(after time.Time) time.Time {
	loc, err := s.resolve()
	if err != nil {
		return time.Time{}
	}
	if s.Every != 0 {
		e := int64(s.Every / time.Second)
		return time.Unix((floorDiv(after.Unix(), e)+1)*e, 0).In(loc)
	}
	at := s.sortedAt()
	y, m, d := after.In(loc).Date()
	// Start a day early: a slot of the day before can fall after the
	// start of this one (a date the zone skips maps to the next).
	// With one day of the week allowed, 9 days hold a slot.
	for i := -1; i <= 8; i++ {
		date := time.Date(y, m, d+i, 12, 0, 0, 0, time.UTC)
		if !s.onDay(date.Weekday()) {
			continue
		}
		for _, c := range at {
			if t := slotTime(date, c, loc); t.After(after) {
				return t
			}
		}
	}
	return time.Time{}
}

// Prev returns the last slot at or before t, in TZ; the zero Time for a
// schedule that Check refuses.
func (s Schedule) Prev(t time.Time) time.Time {
	loc, err := s.resolve()
	if err != nil {
		return time.Time{}
	}
	if s.Every != 0 {
		e := int64(s.Every / time.Second)
		return time.Unix(floorDiv(t.Unix(), e)*e, 0).In(loc)
	}
	at := s.sortedAt()
	y, m, d := t.In(loc).Date()
	for i := 1; i >= -8; i-- {
		date := time.Date(y, m, d+i, 12, 0, 0, 0, time.UTC)
		if !s.onDay(date.Weekday()) {
			continue
		}
		for j := len(at) - 1; j >= 0; j-- {
			if st := slotTime(date, at[j], loc); !st.After(t) {
				return st
			}
		}
	}
	return time.Time{}
}

func (s Schedule) sortedAt() []ClockTime {
	at := slices.Clone(s.At)
	slices.SortFunc(at, func(a, b ClockTime) int { return a.minutes() - b.minutes() })
	return at
}

func (s Schedule) onDay(d time.Weekday) bool {
	return len(s.Days) == 0 || slices.Contains(s.Days, d)
}

// slotTime is the first instant at which the clock in loc reads c or
// later on date (whose year, month and day are taken, in UTC).
func slotTime(date time.Time, c ClockTime, loc *time.Location) time.Time {
	want := time.Date(date.Year(), date.Month(), date.Day(), c.Hour, c.Minute, 0, 0, time.UTC)
	t := time.Date(date.Year(), date.Month(), date.Day(), c.Hour, c.Minute, 0, 0, loc)
	got := wall(t)
	switch {
	case got.Equal(want):
		// The wall time exists; if it also existed in the zone period
		// before t's (fall back), that earlier instant is the slot. time.Date
		// picks either occurrence, depending on the zone.
		start, _ := t.ZoneBounds()
		if start.IsZero() {
			return t
		}
		_, off := start.Add(-time.Second).Zone()
		if e := want.Add(-time.Duration(off) * time.Second).In(loc); e.Before(start) && wall(e).Equal(want) {
			return e
		}
		return t
	case got.Before(want):
		// t is before a gap that swallows the wall time: the slot is the
		// jump, where t's zone period ends.
		if _, end := t.ZoneBounds(); !end.IsZero() && !wall(end).Before(want) {
			return end
		}
	default:
		// t is after the gap: the jump is where t's zone period starts.
		if start, _ := t.ZoneBounds(); !start.IsZero() && !wall(start).Before(want) {
			return start
		}
	}
	return t
}

// wall is t's local date and clock time, as the same reading in UTC.
func wall(t time.Time) time.Time {
	y, m, d := t.Date()
	h, mi, s := t.Clock()
	return time.Date(y, m, d, h, mi, s, t.Nanosecond(), time.UTC)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
