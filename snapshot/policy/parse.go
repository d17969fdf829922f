package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The parsers read what a user types on the command line. Every error
// wraps ErrInvalid and names the value in one line.

// ParseEvery reads an interval of at least MinEvery, in whole seconds:
// a Go duration (30m, 6h, 1h30m) with an optional leading count of days
// (1d, 2d12h).
func ParseEvery(s string) (time.Duration, error) {
	bad := invalidf("every %q: not an interval (use e.g. 30m, 6h, 1h30m, 1d)", s)
	rest := strings.TrimSpace(s)
	var d time.Duration
	if days, after, ok := strings.Cut(rest, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || !digits(days) || n > 100000 {
			return 0, bad
		}
		d, rest = time.Duration(n)*24*time.Hour, after
	} else if rest == "" {
		return 0, bad
	}
	if rest != "" {
		x, err := time.ParseDuration(rest)
		if err != nil || x < 0 {
			return 0, bad
		}
		d += x
	}
	if err := checkEvery(d); err != nil {
		return 0, err
	}
	return d, nil
}

// digits reports whether s is one or more ASCII digits.
func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// ParseClockTime reads a time of day, H:MM or HH:MM (00:00 to 23:59).
func ParseClockTime(s string) (ClockTime, error) {
	str := strings.TrimSpace(s)
	h, m, ok := strings.Cut(str, ":")
	hour, _ := strconv.Atoi(h)
	minute, _ := strconv.Atoi(m)
	c := ClockTime{hour, minute}
	if !ok || !digits(h) || len(h) > 2 || !digits(m) || len(m) != 2 || !c.valid() {
		return ClockTime{}, invalidf("at %q: not a time of day (use HH:MM, 00:00 to 23:59)", s)
	}
	return c, nil
}

// ParseAt reads a comma-separated list of times of day ("02:00,14:30"),
// at least one, none twice, in the order given.
func ParseAt(s string) ([]ClockTime, error) {
	if strings.TrimSpace(s) == "" {
		return nil, invalidf("at: no time of day given (use e.g. 02:00 or 02:00,14:30)")
	}
	var out []ClockTime
	seen := map[int]bool{}
	for _, f := range strings.Split(s, ",") {
		c, err := ParseClockTime(f)
		if err != nil {
			return nil, err
		}
		if seen[c.minutes()] {
			return nil, invalidf("at %q: %s given twice", s, c)
		}
		seen[c.minutes()] = true
		out = append(out, c)
	}
	return out, nil
}

var dayNames = [7]string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// dayName is the short name of a day, as stored and shown.
func dayName(d time.Weekday) string {
	if d < time.Sunday || d > time.Saturday {
		return strconv.Itoa(int(d))
	}
	return dayNames[d]
}

// parseDay reads a day's short or full English name, in any case.
func parseDay(s string) (time.Weekday, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	for d := time.Sunday; d <= time.Saturday; d++ {
		if s == dayNames[d] || s == strings.ToLower(d.String()) {
			return d, true
		}
	}
	return 0, false
}

// ParseDays reads a comma-separated list of days of the week: short or
// full English names in any case ("mon,wed,fri", "Monday"), or ranges
// of them ("mon-fri", "fri-mon" wraps over the week end), none twice.
// The days are returned in the order given.
func ParseDays(s string) ([]time.Weekday, error) {
	if strings.TrimSpace(s) == "" {
		return nil, invalidf("days: no day given (use e.g. mon,wed,fri or mon-fri)")
	}
	var out []time.Weekday
	var seen [7]bool
	add := func(d time.Weekday) error {
		if seen[d] {
			return invalidf("days %q: %s given twice", s, dayName(d))
		}
		seen[d] = true
		out = append(out, d)
		return nil
	}
	for _, f := range strings.Split(s, ",") {
		from, to, isRange := strings.Cut(f, "-")
		a, ok := parseDay(from)
		b := a
		if isRange {
			var okTo bool
			b, okTo = parseDay(to)
			ok = ok && okTo
		}
		if !ok {
			return nil, invalidf("days %q: unknown day %q (use mon, tue, wed, thu, fri, sat, sun, full names or ranges such as mon-fri)", s, strings.TrimSpace(f))
		}
		for d := a; ; d = (d + 1) % 7 {
			if err := add(d); err != nil {
				return nil, err
			}
			if d == b {
				break
			}
		}
	}
	return out, nil
}

// ParseSource reads a source as the CLI takes it: PATH, or DISK=PATH to
// name its disk.
func ParseSource(arg string) (Source, error) {
	disk, path, named := strings.Cut(arg, "=")
	if !named {
		disk, path = "", arg
	} else if disk == "" {
		return Source{}, invalidf("source %q: no disk name before '='", arg)
	}
	if path == "" {
		return Source{}, invalidf("source %q: no path", arg)
	}
	return Source{Disk: disk, Path: path}, nil
}

// ParseOnFailure reads a hook failure mode: abort or continue.
func ParseOnFailure(s string) (OnFailure, error) {
	switch f := OnFailure(strings.ToLower(strings.TrimSpace(s))); f {
	case Abort, Continue:
		return f, nil
	}
	return "", invalidf("hook failure %q: use abort or continue", s)
}

// String describes the schedule in the words the parsers read:
// "every 6h", "at 02:00,14:30 on mon,fri (Europe/Berlin)".
func (s Schedule) String() string {
	var b strings.Builder
	if s.Every != 0 {
		b.WriteString("every " + formatDuration(s.Every))
	}
	if len(s.At) > 0 {
		b.WriteString("at ")
		for i, c := range s.At {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(c.String())
		}
	}
	if len(s.Days) > 0 {
		b.WriteString(" on ")
		for i, d := range s.Days {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(dayName(d))
		}
	}
	switch {
	case s.TZ != "" && s.TZ != LocalTZ:
		fmt.Fprintf(&b, " (%s)", s.TZ)
	case len(s.At) > 0: // a grid of elapsed time needs no zone
		b.WriteString(" (local time)")
	}
	return b.String()
}

// formatDuration writes d as a Go duration without zero tails: 6h, 1m,
// 1h30m, 90s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
