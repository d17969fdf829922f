package policy

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/snapshot"
)

// Policy is a backup policy: what to back up (Sources), when (Schedule),
// what to keep afterwards (Retention) and what to run around the backup
// (PreHook, PostHook). The zero values of TZ, HookTimeout and
// HookFailure mean their defaults; SetDefaults writes them out.
type Policy struct {
	// Name is the policy's name and the resource it backs up into; it
	// follows the rules of snapshot.CheckName for resources.
	Name string
	// Sources are the disks backed up together as one point.
	Sources []Source
	// Schedule says when the policy runs.
	Schedule Schedule
	// Retention is applied to the resource after each successful backup.
	// Its Location is neither stored nor used: periods are reckoned in
	// the schedule's TZ (see Rules).
	Retention snapshot.Rules
	// PreHook and PostHook are argument vectors (no shell: write
	// "sh", "-c", "..." for one), empty for no hook. See the package
	// doc for when they run and what they are given.
	PreHook, PostHook []string
	// HookTimeout bounds each hook's run; DefaultHookTimeout when 0.
	HookTimeout time.Duration
	// HookFailure says what a failing hook does to the run; Abort when
	// empty.
	HookFailure OnFailure
	// Paused policies are never due.
	Paused bool
	// Created and Updated are set by the caller (the daemon's clock).
	// A policy is first due at its first slot after Created.
	Created, Updated time.Time
}

// Source is one disk of a policy.
type Source struct {
	// Disk names the disk inside the resource's points; when empty, the
	// base name of Path without its extension (as for cairn backup).
	Disk string
	// Path is the absolute path of a raw or qcow2 image file or a block
	// device.
	Path string
}

// DiskName is the disk's name: Disk, or the one derived from Path.
func (s Source) DiskName() string {
	if s.Disk != "" {
		return s.Disk
	}
	base := filepath.Base(s.Path)
	return strings.TrimSuffix(base, filepath.Ext(base))
}

// OnFailure says what a failing hook (non-zero exit, timeout, not
// startable) does to its run.
type OnFailure string

const (
	// Abort: a failing pre hook cancels the backup (the run is skipped,
	// the post hook still runs); a failing post hook makes the run a
	// failure, though its point is kept.
	Abort OnFailure = "abort"
	// Continue: a failing hook is logged and the run goes on as if it
	// had succeeded.
	Continue OnFailure = "continue"
)

// Defaults and bounds.
const (
	DefaultHookTimeout = 60 * time.Second
	// MinEvery is the shortest interval of an Every schedule.
	MinEvery = time.Minute
	// LocalTZ is the TZ of a policy that follows the daemon's local time
	// zone, as stored for an empty TZ.
	LocalTZ = "Local"
)

// Errors. Test with errors.Is.
var (
	// ErrInvalid marks a policy, or a piece of one, that the user got
	// wrong: a malformed value, contradictory options, a missing hook
	// or source. The CLI turns it into exit status 2.
	ErrInvalid = errors.New("invalid policy")
	// ErrNotFound: no policy of that name.
	ErrNotFound = errors.New("no such policy")
	// ErrDamaged: a stored policy or state that fails its checks.
	ErrDamaged = errors.New("damaged policy object")
	// ErrUnsupported: a stored policy or state of a format version this
	// cairn does not know (written by a newer one).
	ErrUnsupported = errors.New("unsupported policy format")
)

// invalidError is a user's mistake: errors.Is(err, ErrInvalid) holds,
// and the message is the cause alone, in one line.
type invalidError struct{ err error }

func (e *invalidError) Error() string        { return e.err.Error() }
func (e *invalidError) Unwrap() error        { return e.err }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

// invalidf formats a user's mistake; %w keeps a cause in the chain.
func invalidf(format string, a ...any) error {
	return &invalidError{fmt.Errorf(format, a...)}
}

// SetDefaults writes out the defaults the zero values mean (TZ,
// HookTimeout, HookFailure, the disk names of Sources) and sorts At and
// Days, so that what is stored says what runs. It copies the slices it
// changes.
func (p *Policy) SetDefaults() {
	if p.Schedule.TZ == "" {
		p.Schedule.TZ = LocalTZ
	}
	if p.HookTimeout == 0 {
		p.HookTimeout = DefaultHookTimeout
	}
	if p.HookFailure == "" {
		p.HookFailure = Abort
	}
	if len(p.Sources) > 0 {
		src := slices.Clone(p.Sources)
		for i := range src {
			src[i].Disk = src[i].DiskName()
		}
		p.Sources = src
	}
	if len(p.Schedule.At) > 0 {
		p.Schedule.At = slices.Clone(p.Schedule.At)
		slices.SortFunc(p.Schedule.At, func(a, b ClockTime) int { return a.minutes() - b.minutes() })
	}
	if len(p.Schedule.Days) > 0 {
		p.Schedule.Days = slices.Clone(p.Schedule.Days)
		slices.Sort(p.Schedule.Days)
	}
}

// Rules returns the retention rules with their Location set from the
// schedule's TZ (time.Local for LocalTZ or an unknown zone, which Check
// refuses).
func (p *Policy) Rules() snapshot.Rules {
	r := p.Retention
	loc, err := p.Schedule.Location()
	if err != nil {
		loc = time.Local
	}
	r.Location = loc
	return r
}

// Check validates the definition alone, without looking at the machine:
// the name, the sources' names and paths, the schedule, the retention
// rules, the hooks' shape, the hook timeout and failure mode. Every
// error wraps ErrInvalid (and snapshot.ErrNoRules or snapshot.ErrBadName
// where they apply). Validate adds the checks against the machine.
func (p *Policy) Check() error {
	if err := snapshot.CheckName("resource", p.Name); err != nil {
		return invalidf("%w", err)
	}
	if err := checkSources(p.Sources); err != nil {
		return err
	}
	if err := p.Schedule.Check(); err != nil {
		return err
	}
	if err := checkRules(p.Retention); err != nil {
		return err
	}
	for _, h := range []struct {
		what string
		argv []string
	}{{"pre hook", p.PreHook}, {"post hook", p.PostHook}} {
		if err := checkHookShape(h.what, h.argv); err != nil {
			return err
		}
	}
	if p.HookTimeout < 0 {
		return invalidf("hook timeout %s: give a positive duration", p.HookTimeout)
	}
	switch p.HookFailure {
	case "", Abort, Continue:
	default:
		return invalidf("hook failure %q: use abort or continue", string(p.HookFailure))
	}
	return nil
}

func checkSources(src []Source) error {
	if len(src) == 0 {
		return invalidf("no source given: a policy backs up at least one disk")
	}
	disks := map[string]bool{}
	paths := map[string]bool{}
	for _, s := range src {
		switch {
		case s.Path == "":
			return invalidf("source %q: no path", s.Disk)
		case !filepath.IsAbs(s.Path):
			return invalidf("source %s: give an absolute path (the daemon runs the policy)", s.Path)
		case strings.ContainsAny(s.Path, " \t\n\r\v\f"):
			return invalidf("source %q: white space in a source path is not supported (hooks get the paths space-separated)", s.Path)
		}
		name := s.DiskName()
		if err := snapshot.CheckName("disk", name); err != nil {
			return invalidf("source %s: %w (name it with DISK=PATH)", s.Path, err)
		}
		if disks[name] {
			return invalidf("two sources named disk %q (name them with DISK=PATH)", name)
		}
		clean := filepath.Clean(s.Path)
		if paths[clean] {
			return invalidf("source %s given twice", s.Path)
		}
		disks[name], paths[clean] = true, true
	}
	return nil
}

func checkRules(r snapshot.Rules) error {
	if r.Within.Years < 0 || r.Within.Months < 0 || r.Within.Days < 0 || r.Within.Hours < 0 {
		return invalidf("retention: keep within %+v: spans must be positive", r.Within)
	}
	if err := r.Check(); err != nil {
		return invalidf("retention: %w", err)
	}
	return nil
}

// checkHookShape refuses a hook that cannot name a program, whatever the
// machine: an empty argv[0] or a relative path.
func checkHookShape(what string, argv []string) error {
	if len(argv) == 0 {
		return nil
	}
	name := argv[0]
	switch {
	case strings.TrimSpace(name) == "":
		return invalidf("%s: no program named (its first word is empty)", what)
	case strings.Contains(name, "/") && !filepath.IsAbs(name):
		return invalidf("%s %s: give an absolute path or a command name found on PATH", what, name)
	}
	return nil
}
