package policy

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/snapshot"
)

// testPolicy is a valid policy, Check-wise.
func testPolicy() *Policy {
	return &Policy{
		Name:      "web01",
		Sources:   []Source{{Disk: "vda", Path: "/dev/vg0/web01"}, {Path: "/srv/images/data.qcow2"}},
		Schedule:  Schedule{At: []ClockTime{{14, 30}, {2, 0}}, Days: []time.Weekday{time.Friday, time.Monday}, TZ: "Europe/Berlin"},
		Retention: snapshot.Rules{Daily: 7, Weekly: 4, Within: snapshot.Span{Days: 14}},
		PreHook:   []string{"fsfreeze", "-f", "/srv"},
		PostHook:  []string{"/usr/sbin/fsfreeze", "-u", "/srv"},
		Created:   time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC),
		Updated:   time.Date(2026, 11, 22, 9, 30, 0, 0, time.UTC),
	}
}

func TestCheck(t *testing.T) {
	if err := testPolicy().Check(); err != nil {
		t.Fatalf("a valid policy: %v", err)
	}
	cases := []struct {
		name   string
		change func(p *Policy)
		want   string
		is     error // a further sentinel the error wraps
	}{
		{"no name", func(p *Policy) { p.Name = "" }, `resource ""`, snapshot.ErrBadName},
		{"a bad name", func(p *Policy) { p.Name = "web 01" }, `resource "web 01"`, snapshot.ErrBadName},
		{"a state object's name", func(p *Policy) { p.Name = "web01@state" }, `resource "web01@state"`, snapshot.ErrBadName},
		{"no source", func(p *Policy) { p.Sources = nil }, "no source given", nil},
		{"a source without a path", func(p *Policy) { p.Sources[0].Path = "" }, `source "vda": no path`, nil},
		{"a relative source", func(p *Policy) { p.Sources[0].Path = "web01.img" }, "source web01.img: give an absolute path", nil},
		{"white space in a source path", func(p *Policy) { p.Sources[0].Path = "/srv/my disk.img" }, "white space", nil},
		{"a source whose disk name is bad", func(p *Policy) { p.Sources[1] = Source{Path: "/dev/.hidden"} }, "(name it with DISK=PATH)", snapshot.ErrBadName},
		{"a bad disk name", func(p *Policy) { p.Sources[0].Disk = "v/da" }, `disk "v/da"`, snapshot.ErrBadName},
		{"two disks of one name", func(p *Policy) { p.Sources[1].Disk = "vda" }, `two sources named disk "vda"`, nil},
		{"one path twice", func(p *Policy) { p.Sources[1] = Source{Disk: "vdb", Path: "/dev/vg0//web01"} }, "given twice", nil},
		{"every and at", func(p *Policy) { p.Schedule.Every = time.Hour }, "give every or at, not both", nil},
		{"days without at", func(p *Policy) { p.Schedule.At = nil }, "days without at", nil},
		{"days with every", func(p *Policy) { p.Schedule.At, p.Schedule.Every = nil, time.Hour }, "days apply to at times", nil},
		{"neither every nor at", func(p *Policy) { p.Schedule = Schedule{} }, "give every (e.g. 6h) or at (e.g. 02:00)", nil},
		{"every too short", func(p *Policy) { p.Schedule = Schedule{Every: 30 * time.Second} }, "every 30s: the shortest interval is 1m", nil},
		{"every negative", func(p *Policy) { p.Schedule = Schedule{Every: -time.Hour} }, "the shortest interval", nil},
		{"every not in seconds", func(p *Policy) { p.Schedule = Schedule{Every: time.Hour + time.Millisecond} }, "whole seconds", nil},
		{"at twice", func(p *Policy) { p.Schedule.At = []ClockTime{{2, 0}, {2, 0}} }, "at 02:00 given twice", nil},
		{"at no time of day", func(p *Policy) { p.Schedule.At = []ClockTime{{24, 0}} }, "at 24:00: not a time of day", nil},
		{"a day twice", func(p *Policy) { p.Schedule.Days = []time.Weekday{time.Monday, time.Monday} }, "mon given twice", nil},
		{"an unknown day", func(p *Policy) { p.Schedule.Days = []time.Weekday{9} }, "9 is not a day of the week", nil},
		{"an unknown time zone", func(p *Policy) { p.Schedule.TZ = "Europe/Atlantis" }, `time zone "Europe/Atlantis": unknown`, nil},
		{"no retention rule", func(p *Policy) { p.Retention = snapshot.Rules{} }, "no retention rule", snapshot.ErrNoRules},
		{"a negative count", func(p *Policy) { p.Retention.Daily = -1 }, "count of -1", nil},
		{"a negative span", func(p *Policy) { p.Retention.Within = snapshot.Span{Days: -3} }, "spans must be positive", nil},
		{"a hook without a program", func(p *Policy) { p.PreHook = []string{"", "-f"} }, "pre hook: no program named", nil},
		{"a hook of a relative path", func(p *Policy) { p.PostHook = []string{"bin/thaw"} }, "post hook bin/thaw: give an absolute path", nil},
		{"a negative hook timeout", func(p *Policy) { p.HookTimeout = -time.Second }, "hook timeout -1s", nil},
		{"an unknown hook failure mode", func(p *Policy) { p.HookFailure = "retry" }, `hook failure "retry": use abort or continue`, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := testPolicy()
			c.change(p)
			err := p.Check()
			wantInvalid(t, err, c.want)
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("%v does not wrap %v", err, c.is)
			}
			if v := p.Validate(""); v == nil || v.Error() != err.Error() {
				t.Errorf("Validate = %v, want Check's error", v)
			}
		})
	}
}

func TestSetDefaults(t *testing.T) {
	p := testPolicy()
	at := p.Schedule.At
	p.Schedule.TZ = ""
	p.SetDefaults()
	if p.Schedule.TZ != LocalTZ || p.HookTimeout != DefaultHookTimeout || p.HookFailure != Abort {
		t.Errorf("defaults: TZ %q, hook timeout %s, hook failure %q", p.Schedule.TZ, p.HookTimeout, p.HookFailure)
	}
	if p.Sources[1].Disk != "data" {
		t.Errorf("disk of %s = %q, want data", p.Sources[1].Path, p.Sources[1].Disk)
	}
	if p.Schedule.At[0] != (ClockTime{2, 0}) || p.Schedule.Days[0] != time.Monday {
		t.Errorf("at %v, days %v: not sorted", p.Schedule.At, p.Schedule.Days)
	}
	if at[0] != (ClockTime{14, 30}) {
		t.Errorf("SetDefaults sorted the caller's slice")
	}
	if r := p.Rules(); r.Location != time.Local || r.Daily != 7 {
		t.Errorf("Rules = %+v, want the local zone", r)
	}
	p.Schedule.TZ = "America/New_York"
	if r := p.Rules(); r.Location.String() != "America/New_York" {
		t.Errorf("Rules().Location = %s", r.Location)
	}
}

// writeFile writes a file of mode perm under dir.
func writeFile(t testing.TB, dir, name, content string, perm os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil {
		t.Fatal(err)
	}
	return p
}

// blockDevice returns a block device of this machine, or "".
func blockDevice() string {
	for _, p := range []string{"/dev/loop0", "/dev/sda", "/dev/vda", "/dev/nvme0n1", "/dev/xvda"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0 {
			return p
		}
	}
	return ""
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	img := writeFile(t, dir, "web01.img", "disk", 0o644)
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	freeze := writeFile(t, bin, "freeze", "#!/bin/sh\n", 0o755)
	writeFile(t, bin, "thaw.sh", "#!/bin/sh\n", 0o644)
	other := filepath.Join(dir, "other")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, other, "thaw.sh", "#!/bin/sh\n", 0o755)
	path := "relative:" + bin // the relative entry is skipped

	base := func() *Policy {
		p := testPolicy()
		p.Sources = []Source{{Disk: "vda", Path: img}}
		p.PreHook = []string{"freeze", "-f"}
		p.PostHook = []string{freeze, "-u"}
		return p
	}
	if err := base().Validate(path); err != nil {
		t.Fatalf("a valid policy: %v", err)
	}
	if dev := blockDevice(); dev != "" {
		p := base()
		p.Sources = append(p.Sources, Source{Disk: "vdb", Path: dev})
		if err := p.Validate(path); err != nil {
			t.Errorf("block device %s: %v", dev, err)
		}
	}
	p := base()
	p.PostHook = []string{"thaw.sh"}
	if err := p.Validate(bin + ":" + other); err != nil {
		t.Errorf("an executable later on PATH: %v", err)
	}

	cases := []struct {
		name   string
		change func(p *Policy)
		path   string
		want   string
	}{
		{"a missing source", func(p *Policy) { p.Sources[0].Path = filepath.Join(dir, "gone.img") }, path, "gone.img: no such file or device"},
		{"a directory source", func(p *Policy) { p.Sources[0].Path = dir }, path, "a directory, not a disk image or block device"},
		{"a character device source", func(p *Policy) { p.Sources[0].Path = "/dev/null" }, path, "/dev/null: a character device"},
		{"a missing hook", func(p *Policy) { p.PostHook = []string{filepath.Join(bin, "nope")} }, path, "post hook " + filepath.Join(bin, "nope") + ": no such file"},
		{"a hook not executable", func(p *Policy) { p.PostHook = []string{filepath.Join(bin, "thaw.sh")} }, path, "thaw.sh: not executable (mode 0644)"},
		{"a hook that is a directory", func(p *Policy) { p.PostHook = []string{bin} }, path, bin + ": a directory"},
		{"a hook not on PATH", func(p *Policy) { p.PreHook = []string{"nope"} }, path, "pre hook nope: not found on PATH (" + path + ")"},
		{"a hook on PATH not executable", func(p *Policy) { p.PreHook = []string{"thaw.sh"} }, path,
			"pre hook thaw.sh: not found on PATH, and " + filepath.Join(bin, "thaw.sh") + " is not executable (mode 0644)"},
		{"a hook name without PATH", func(p *Policy) {}, "", "pre hook freeze: no PATH to look for it in"},
		{"a hook found only in a relative PATH entry", func(p *Policy) {}, "relative", "not found on PATH"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := base()
			c.change(p)
			wantInvalid(t, p.Validate(c.path), c.want)
		})
	}
}
