package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// wantInvalid fails unless err wraps ErrInvalid and says want.
func wantInvalid(t testing.TB, err error, want string) {
	t.Helper()
	switch {
	case err == nil:
		t.Fatalf("no error, want one saying %q", want)
	case !errors.Is(err, ErrInvalid):
		t.Fatalf("error %q does not wrap ErrInvalid", err)
	case !strings.Contains(err.Error(), want):
		t.Fatalf("error %q does not say %q", err, want)
	case strings.Contains(err.Error(), "\n"):
		t.Fatalf("error %q is more than one line", err)
	}
}

func TestParseEvery(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
	}{
		{"6h", 6 * time.Hour}, {"30m", 30 * time.Minute}, {"1m", time.Minute}, {"90s", 90 * time.Second},
		{"1h30m", 90 * time.Minute}, {" 2h ", 2 * time.Hour}, {"1d", 24 * time.Hour}, {"2d12h", 60 * time.Hour},
	} {
		got, err := ParseEvery(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseEvery(%q) = %s, %v; want %s", c.in, got, err, c.want)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"", "not an interval"}, {"6", "not an interval"}, {"six hours", "not an interval"}, {"d", "not an interval"},
		{"-1h", "not an interval"}, {"1x", "not an interval"}, {"1d-1h", "not an interval"}, {"+1d", "not an interval"},
		{"30s", "the shortest interval is 1m"}, {"0s", "the shortest interval is 1m"}, {"0d", "the shortest interval is 1m"},
		{"1m0.5s", "give whole seconds"},
	} {
		_, err := ParseEvery(c.in)
		wantInvalid(t, err, c.want)
	}
}

func TestParseAt(t *testing.T) {
	got, err := ParseAt("14:30, 02:00,0:05,23:59")
	if err != nil {
		t.Fatal(err)
	}
	if want := []ClockTime{{14, 30}, {2, 0}, {0, 5}, {23, 59}}; !slices.Equal(got, want) {
		t.Fatalf("ParseAt = %v, want %v", got, want)
	}
	if s := got[2].String(); s != "00:05" {
		t.Errorf("String = %q", s)
	}
	for _, c := range []struct{ in, want string }{
		{"", "no time of day given"}, {"24:00", "not a time of day"}, {"12:60", "not a time of day"}, {"2", "not a time of day"},
		{"02:00,", "not a time of day"}, {"2:0", "not a time of day"}, {"002:00", "not a time of day"}, {"-1:00", "not a time of day"},
		{"+1:00", "not a time of day"}, {"02:00pm", "not a time of day"}, {"02:00,2:00", "02:00 given twice"},
	} {
		_, err := ParseAt(c.in)
		wantInvalid(t, err, c.want)
	}
}

func TestParseDays(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []time.Weekday
	}{
		{"mon,wed,fri", []time.Weekday{time.Monday, time.Wednesday, time.Friday}},
		{"Monday, SUNDAY,tue", []time.Weekday{time.Monday, time.Sunday, time.Tuesday}},
		{"sat", []time.Weekday{time.Saturday}},
		{"mon-fri", []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday}},
		{"fri-mon", []time.Weekday{time.Friday, time.Saturday, time.Sunday, time.Monday}},
		{"sun-sun", []time.Weekday{time.Sunday}},
	} {
		got, err := ParseDays(c.in)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("ParseDays(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"", "no day given"}, {"mon,funday", `unknown day "funday"`}, {"mo", `unknown day "mo"`}, {"mon,", `unknown day ""`},
		{"mon-", "unknown day"}, {"1", "unknown day"}, {"mon,Monday", "mon given twice"}, {"mon-wed,tue", "tue given twice"},
	} {
		_, err := ParseDays(c.in)
		wantInvalid(t, err, c.want)
	}
}

func TestParseSource(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Source
	}{
		{"/dev/vg0/web01", Source{Path: "/dev/vg0/web01"}},
		{"vda=/srv/web01.qcow2", Source{Disk: "vda", Path: "/srv/web01.qcow2"}},
		{"vda=/odd=name.img", Source{Disk: "vda", Path: "/odd=name.img"}},
	} {
		got, err := ParseSource(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseSource(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	if d := (Source{Path: "/srv/web01.qcow2"}).DiskName(); d != "web01" {
		t.Errorf("DiskName = %q, want web01", d)
	}
	for _, c := range []struct{ in, want string }{{"", "no path"}, {"vda=", "no path"}, {"=/dev/sda", "no disk name"}} {
		_, err := ParseSource(c.in)
		wantInvalid(t, err, c.want)
	}
}

func TestParseOnFailure(t *testing.T) {
	if f, err := ParseOnFailure("Continue"); err != nil || f != Continue {
		t.Errorf("ParseOnFailure(Continue) = %q, %v", f, err)
	}
	_, err := ParseOnFailure("retry")
	wantInvalid(t, err, `hook failure "retry": use abort or continue`)
}

func TestScheduleString(t *testing.T) {
	for _, c := range []struct {
		s    Schedule
		want string
	}{
		{Schedule{Every: 6 * time.Hour}, "every 6h"},
		{Schedule{Every: 90 * time.Minute, TZ: "UTC"}, "every 1h30m (UTC)"},
		{Schedule{At: []ClockTime{{2, 0}, {14, 30}}, Days: []time.Weekday{time.Monday, time.Friday}, TZ: "Europe/Berlin"},
			"at 02:00,14:30 on mon,fri (Europe/Berlin)"},
	} {
		if got := c.s.String(); got != c.want {
			t.Errorf("String = %q, want %q", got, c.want)
		}
	}
}
