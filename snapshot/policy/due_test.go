package policy

import (
	"testing"
	"time"

	"github.com/cairn-backup/cairn/snapshot"
)

func duePolicy(s Schedule, created string, t testing.TB) *Policy {
	return &Policy{
		Name:      "web01",
		Sources:   []Source{{Path: "/dev/vg0/web01"}},
		Schedule:  s,
		Retention: snapshot.Rules{Daily: 7},
		Created:   instant(t, created),
	}
}

func TestDue(t *testing.T) {
	daily := Schedule{At: []ClockTime{clock(2, 0)}, TZ: "UTC"}
	every6h := Schedule{Every: 6 * time.Hour, TZ: "UTC"}
	cases := []struct {
		name     string
		s        Schedule
		created  string
		lastSlot string // "" for a policy that never ran
		paused   bool
		now      string
		want     string // the due slot; "" for not due
	}{
		{"never ran: not at once", daily, "2026-11-20T12:00:00Z", "", false, "2026-11-20T12:00:00Z", ""},
		{"never ran: not before its first slot", daily, "2026-11-20T12:00:00Z", "", false, "2026-11-21T01:59:59Z", ""},
		{"never ran: at its first slot", daily, "2026-11-20T12:00:00Z", "", false, "2026-11-21T02:00:00Z", "2026-11-21T02:00:00Z"},
		{"never ran: created just before a slot", daily, "2026-11-21T01:59:00Z", "", false, "2026-11-21T02:00:30Z", "2026-11-21T02:00:00Z"},
		{"never ran: created at a slot, that slot is not after it", daily, "2026-11-21T02:00:00Z", "", false, "2026-11-21T02:00:30Z", ""},
		{"never ran: created long ago, one run", daily, "2026-01-01T00:00:00Z", "", false, "2026-11-21T12:00:00Z", "2026-11-21T02:00:00Z"},
		{"ran: not due until the next slot", daily, "2026-01-01T00:00:00Z", "2026-11-21T02:00:00Z", false, "2026-11-22T01:59:59Z", ""},
		{"ran: due at the next slot", daily, "2026-01-01T00:00:00Z", "2026-11-21T02:00:00Z", false, "2026-11-22T02:00:00Z", "2026-11-22T02:00:00Z"},
		{"down for 3 days: one run, for the latest slot", daily, "2026-01-01T00:00:00Z", "2026-11-20T02:00:00Z", false, "2026-11-23T12:00:00Z", "2026-11-23T02:00:00Z"},
		{"down for 3 days, every 6h: one run", every6h, "2026-01-01T00:00:00Z", "2026-11-20T06:00:00Z", false, "2026-11-23T13:00:00Z", "2026-11-23T12:00:00Z"},
		{"every 6h: created between slots", every6h, "2026-11-21T01:00:00Z", "", false, "2026-11-21T05:59:00Z", ""},
		{"every 6h: first slot after creation", every6h, "2026-11-21T01:00:00Z", "", false, "2026-11-21T06:00:00Z", "2026-11-21T06:00:00Z"},
		{"paused", daily, "2026-01-01T00:00:00Z", "2026-11-20T02:00:00Z", true, "2026-11-23T12:00:00Z", ""},
		{"the clock set back repeats no slot", daily, "2026-01-01T00:00:00Z", "2026-11-21T02:00:00Z", false, "2026-11-20T03:00:00Z", ""},
		{"an invalid schedule is never due", Schedule{Every: time.Second}, "2026-01-01T00:00:00Z", "", false, "2026-11-23T12:00:00Z", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := duePolicy(c.s, c.created, t)
			p.Paused = c.paused
			var st State
			if c.lastSlot != "" {
				st.LastSlot = instant(t, c.lastSlot)
			}
			slot, due := p.Due(instant(t, c.now), st)
			switch {
			case c.want == "" && due:
				t.Fatalf("due for %s, want not due", slot)
			case c.want == "" && !slot.IsZero():
				t.Fatalf("not due, but slot %s", slot)
			case c.want != "" && (!due || !slot.Equal(instant(t, c.want))):
				t.Fatalf("Due = %s, %v; want %s, true", slot, due, c.want)
			}
		})
	}
}

// A daemon that wakes twice a minute (on its first and last second) and runs
// what is due runs each slot once: the one in the spring gap, and the
// one in the repeated hour, once each.
func TestDueSimulated(t *testing.T) {
	cases := []struct {
		name      string
		s         Schedule
		from, to  string
		down, up  string // the daemon is down from down to up ("" never)
		want      []string
		wantTimes []string // when each ran, if not at its slot
	}{
		{"Berlin spring", Schedule{At: []ClockTime{clock(2, 30)}, TZ: "Europe/Berlin"},
			"2026-03-27T12:00:00+01:00", "2026-03-30T03:00:00+02:00", "", "",
			[]string{"2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"}, nil},
		{"Berlin autumn", Schedule{At: []ClockTime{clock(2, 30)}, TZ: "Europe/Berlin"},
			"2026-10-23T12:00:00+02:00", "2026-10-26T03:00:00+01:00", "", "",
			[]string{"2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"}, nil},
		{"New York spring", Schedule{At: []ClockTime{clock(2, 30)}, TZ: "America/New_York"},
			"2026-03-06T12:00:00-05:00", "2026-03-09T03:00:00-04:00", "", "",
			[]string{"2026-03-07T02:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"}, nil},
		{"New York autumn, two slots in the repeated hour", Schedule{At: []ClockTime{clock(1, 15), clock(1, 45)}, TZ: "America/New_York"},
			"2026-10-31T12:00:00-04:00", "2026-11-02T02:00:00-05:00", "", "",
			[]string{"2026-11-01T01:15:00-04:00", "2026-11-01T01:45:00-04:00", "2026-11-02T01:15:00-05:00", "2026-11-02T01:45:00-05:00"}, nil},
		{"every 30m across the Berlin autumn change: 48 in 24h", Schedule{Every: 30 * time.Minute, TZ: "Europe/Berlin"},
			"2026-10-24T23:59:00Z", "2026-10-25T23:59:00Z", "", "",
			every(t, "2026-10-25T00:00:00Z", 30*time.Minute, 48), nil},
		{"down for three days", Schedule{At: []ClockTime{clock(2, 0), clock(14, 0)}, TZ: "Europe/Berlin"},
			"2026-11-20T12:00:00+01:00", "2026-11-25T01:00:00+01:00", "2026-11-21T10:00:00+01:00", "2026-11-24T09:17:00+01:00",
			[]string{"2026-11-20T14:00:00+01:00", "2026-11-21T02:00:00+01:00", "2026-11-24T02:00:00+01:00", "2026-11-24T14:00:00+01:00"},
			[]string{"", "", "2026-11-24T09:17:00+01:00", ""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := duePolicy(c.s, c.from, t)
			from, to := instant(t, c.from), instant(t, c.to)
			var down, up time.Time
			if c.down != "" {
				down, up = instant(t, c.down), instant(t, c.up)
			}
			var st State
			var runs, at []time.Time
			for now := from; now.Before(to); now = now.Add(time.Minute) {
				if !down.IsZero() && !now.Before(down) && now.Before(up) {
					continue
				}
				for _, tick := range []time.Time{now, now.Add(59 * time.Second)} {
					if slot, due := p.Due(tick, st); due {
						st.LastSlot = slot
						runs, at = append(runs, slot), append(at, tick)
					}
				}
			}
			if len(runs) != len(c.want) {
				t.Fatalf("%d runs %v, want %d %v", len(runs), runs, len(c.want), c.want)
			}
			for i, w := range c.want {
				if !runs[i].Equal(instant(t, w)) {
					t.Errorf("run %d for slot %s, want %s", i, runs[i], w)
				}
				when := w
				if c.wantTimes != nil && c.wantTimes[i] != "" {
					when = c.wantTimes[i]
				}
				if !at[i].Equal(instant(t, when)) {
					t.Errorf("run %d at %s, want %s", i, at[i], when)
				}
			}
		})
	}
}

// every lists n instants from start, d apart, in RFC 3339.
func every(t testing.TB, start string, d time.Duration, n int) []string {
	s := instant(t, start)
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, s.Add(time.Duration(i)*d).Format(time.RFC3339))
	}
	return out
}
