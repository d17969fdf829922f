package snapshot

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Rules decide which points of a resource to keep. Zero fields are
// rules not given.
//
// Every period rule (Hourly, Daily, Weekly, Monthly, Yearly) keeps the
// newest point of each of its periods, counting back from the newest
// point, for as many periods as it says, counting only periods that hold
// a point; periods are hours, days, ISO weeks (Monday to Sunday), months
// and years of the local time in Location. Last keeps the newest N
// points; Within keeps every point taken less than that span before the
// newest point. The rules are applied each on its own, so a point kept by one
// still counts for the others. A rule that runs out of points before it
// has kept its count keeps the oldest point too. Whatever the rules say,
// the newest point of the resource and every pinned point are kept.
//
// These are restic's forget rules; the difference is that cairn always
// keeps the newest point and pinned points.
type Rules struct {
	Last    int
	Within  Span
	Hourly  int
	Daily   int
	Weekly  int
	Monthly int
	Yearly  int
	// Location is the time zone periods are reckoned in; time.Local when
	// nil.
	Location *time.Location
}

// ErrNoRules is returned for Rules that say nothing: pruning with no rule
// is a mistake, never "delete everything".
var ErrNoRules = errors.New("no retention rule given (--keep-last, --keep-within, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly or --keep-yearly)")

// Empty reports whether no rule is given.
func (r Rules) Empty() bool {
	return r.Last == 0 && r.Within.IsZero() && r.Hourly == 0 && r.Daily == 0 && r.Weekly == 0 && r.Monthly == 0 && r.Yearly == 0
}

// Check refuses no rules and negative counts.
func (r Rules) Check() error {
	if r.Empty() {
		return ErrNoRules
	}
	for _, n := range []int{r.Last, r.Hourly, r.Daily, r.Weekly, r.Monthly, r.Yearly} {
		if n < 0 {
			return fmt.Errorf("a count of %d points: counts must be positive", n)
		}
	}
	return nil
}

func (r Rules) String() string {
	var parts []string
	for _, c := range []struct {
		n    int
		what string
	}{{r.Last, "last"}, {r.Hourly, "hourly"}, {r.Daily, "daily"}, {r.Weekly, "weekly"}, {r.Monthly, "monthly"}, {r.Yearly, "yearly"}} {
		if c.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c.n, c.what))
		}
	}
	if !r.Within.IsZero() {
		parts = append(parts, "within "+r.Within.String())
	}
	return "keep " + strings.Join(parts, ", ")
}

// Span is a calendar span, as --keep-within takes it: years, months,
// days and hours, so that "1m" is a month of the calendar, not 30 days.
type Span struct {
	Years, Months, Days, Hours int
}

// IsZero reports whether the span is empty.
func (s Span) IsZero() bool { return s == Span{} }

// Before returns t moved back by the span.
func (s Span) Before(t time.Time) time.Time {
	return t.AddDate(-s.Years, -s.Months, -s.Days).Add(-time.Duration(s.Hours) * time.Hour)
}

func (s Span) String() string {
	var b strings.Builder
	for _, c := range []struct {
		n int
		u string
	}{{s.Years, "y"}, {s.Months, "m"}, {s.Days, "d"}, {s.Hours, "h"}} {
		if c.n != 0 {
			fmt.Fprintf(&b, "%d%s", c.n, c.u)
		}
	}
	return b.String()
}

// ParseSpan reads spans such as 7d, 12h, 2w, 1y6m, 1y2m3d4h (y years, m
// months, w weeks, d days, h hours).
func ParseSpan(str string) (Span, error) {
	var s Span
	rest := strings.TrimSpace(str)
	if rest == "" {
		return s, fmt.Errorf("empty span (use e.g. 7d, 12h, 2w, 1y6m)")
	}
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i == len(rest) {
			return Span{}, fmt.Errorf("invalid span %q (use e.g. 7d, 12h, 2w, 1y6m: y years, m months, w weeks, d days, h hours)", str)
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil || n > 100000 {
			return Span{}, fmt.Errorf("invalid span %q", str)
		}
		switch rest[i] {
		case 'y':
			s.Years += n
		case 'm':
			s.Months += n
		case 'w':
			s.Days += 7 * n
		case 'd':
			s.Days += n
		case 'h':
			s.Hours += n
		default:
			return Span{}, fmt.Errorf("invalid span %q: unit %q (use y, m, w, d or h)", str, rest[i:i+1])
		}
		rest = rest[i+1:]
	}
	if s.IsZero() {
		return s, fmt.Errorf("span %q is zero", str)
	}
	return s, nil
}

// Decision is what the rules decided for one point.
type Decision struct {
	Point   *Point   `json:"-"`
	Name    string   `json:"point"`
	Time    string   `json:"time"`
	Keep    bool     `json:"keep"`
	Reasons []string `json:"reasons"` // the rules that keep it; empty for a point removed
}

// Apply decides, for the points of one resource (any order), which to
// keep. It returns a decision per point, newest first.
func (r Rules) Apply(points []*Point) []Decision {
	loc := r.Location
	if loc == nil {
		loc = time.Local
	}
	list := append([]*Point(nil), points...)
	sort.SliceStable(list, func(i, j int) bool { return idLess(list[j].ID, list[i].ID) })
	out := make([]Decision, len(list))
	if len(list) == 0 {
		return out
	}
	type bucket struct {
		count  int
		key    func(t time.Time, nr int) int
		last   int
		reason string
	}
	buckets := []*bucket{
		{r.Last, func(_ time.Time, nr int) int { return nr }, -1, "last"},
		{r.Hourly, func(t time.Time, _ int) int { return t.Year()*1000000 + int(t.Month())*10000 + t.Day()*100 + t.Hour() }, -1, "hourly"},
		{r.Daily, func(t time.Time, _ int) int { return t.Year()*10000 + int(t.Month())*100 + t.Day() }, -1, "daily"},
		{r.Weekly, func(t time.Time, _ int) int { y, w := t.ISOWeek(); return y*100 + w }, -1, "weekly"},
		{r.Monthly, func(t time.Time, _ int) int { return t.Year()*100 + int(t.Month()) }, -1, "monthly"},
		{r.Yearly, func(t time.Time, _ int) int { return t.Year() }, -1, "yearly"},
	}
	newest := list[0].Time
	var within time.Time
	if !r.Within.IsZero() {
		within = r.Within.Before(newest)
	}
	for nr, p := range list {
		d := Decision{Point: p, Name: p.Name(), Time: p.Time.In(loc).Format(time.RFC3339), Reasons: []string{}}
		t := p.Time.In(loc)
		if nr == 0 {
			d.Reasons = append(d.Reasons, "newest")
		}
		if p.Pinned {
			d.Reasons = append(d.Reasons, "pinned")
		}
		if !r.Within.IsZero() && p.Time.After(within) {
			d.Reasons = append(d.Reasons, "within "+r.Within.String())
		}
		for _, b := range buckets {
			if b.count <= 0 {
				continue
			}
			k := b.key(t, nr)
			switch {
			case k != b.last:
				b.last = k
				b.count--
				d.Reasons = append(d.Reasons, b.reason)
			case nr == len(list)-1:
				// The rule ran out of points before its count: the oldest
				// point is kept too, for the longest history.
				b.count--
				d.Reasons = append(d.Reasons, "oldest for "+b.reason)
			}
		}
		d.Keep = len(d.Reasons) > 0
		out[nr] = d
	}
	return out
}
