package policy

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/cairn-backup/cairn/chunkstore"
	"github.com/cairn-backup/cairn/snapshot"
)

// The JSON form of a policy, as stored (inside the envelope below), sent
// over the daemon's API and printed by --json:
//
//	{
//	  "name": "web01",
//	  "sources": [{"disk": "vda", "path": "/dev/vg0/web01"}],
//	  "schedule": {"at": ["02:00", "14:30"], "days": ["mon", "fri"], "tz": "Europe/Berlin"},
//	  "retention": {"keep_daily": 7, "keep_within": "2w"},
//	  "pre_hook": ["fsfreeze", "-f", "/srv"],
//	  "post_hook": ["fsfreeze", "-u", "/srv"],
//	  "hook_timeout": "1m",
//	  "hook_failure": "abort",
//	  "paused": false,
//	  "created": "2026-11-21T10:00:00Z",
//	  "updated": "2026-11-21T10:00:00Z"
//	}
//
// A schedule is {"every": "6h", "tz": ...} or {"at": [...], "days": [...],
// "tz": ...}. Durations are Go durations, keep_within a span as
// snapshot.ParseSpan reads it, days short names. Unknown fields are
// refused: a field this cairn does not know may be a setting it would
// silently ignore.

type wirePolicy struct {
	Name        string       `json:"name"`
	Sources     []wireSource `json:"sources"`
	Schedule    wireSchedule `json:"schedule"`
	Retention   wireRules    `json:"retention"`
	PreHook     []string     `json:"pre_hook,omitempty"`
	PostHook    []string     `json:"post_hook,omitempty"`
	HookTimeout string       `json:"hook_timeout,omitempty"`
	HookFailure OnFailure    `json:"hook_failure,omitempty"`
	Paused      bool         `json:"paused"`
	Created     time.Time    `json:"created,omitzero"`
	Updated     time.Time    `json:"updated,omitzero"`
}

type wireSource struct {
	Disk string `json:"disk,omitempty"`
	Path string `json:"path"`
}

type wireSchedule struct {
	Every string   `json:"every,omitempty"`
	At    []string `json:"at,omitempty"`
	Days  []string `json:"days,omitempty"`
	TZ    string   `json:"tz,omitempty"`
}

type wireRules struct {
	Last    int    `json:"keep_last,omitempty"`
	Within  string `json:"keep_within,omitempty"`
	Hourly  int    `json:"keep_hourly,omitempty"`
	Daily   int    `json:"keep_daily,omitempty"`
	Weekly  int    `json:"keep_weekly,omitempty"`
	Monthly int    `json:"keep_monthly,omitempty"`
	Yearly  int    `json:"keep_yearly,omitempty"`
}

// MarshalJSON writes the policy's JSON form with its defaults written
// out (SetDefaults) and times in UTC.
func (p Policy) MarshalJSON() ([]byte, error) {
	p.SetDefaults()
	w := wirePolicy{
		Name:        p.Name,
		Sources:     []wireSource{},
		PreHook:     p.PreHook,
		PostHook:    p.PostHook,
		HookTimeout: formatDuration(p.HookTimeout),
		HookFailure: p.HookFailure,
		Paused:      p.Paused,
		Created:     p.Created.UTC(),
		Updated:     p.Updated.UTC(),
		Schedule:    wireSchedule{TZ: p.Schedule.TZ},
		Retention: wireRules{Last: p.Retention.Last, Within: p.Retention.Within.String(), Hourly: p.Retention.Hourly,
			Daily: p.Retention.Daily, Weekly: p.Retention.Weekly, Monthly: p.Retention.Monthly, Yearly: p.Retention.Yearly},
	}
	for _, s := range p.Sources {
		w.Sources = append(w.Sources, wireSource(s))
	}
	if p.Schedule.Every != 0 {
		w.Schedule.Every = formatDuration(p.Schedule.Every)
	}
	for _, c := range p.Schedule.At {
		w.Schedule.At = append(w.Schedule.At, c.String())
	}
	for _, d := range p.Schedule.Days {
		w.Schedule.Days = append(w.Schedule.Days, dayName(d))
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads the JSON form, refusing unknown fields and
// malformed values with errors that wrap ErrInvalid. It does not Check
// the result.
func (p *Policy) UnmarshalJSON(b []byte) error {
	var w wirePolicy
	if err := strictJSON(b, &w); err != nil {
		return invalidf("policy: %v", err)
	}
	q := Policy{
		Name:        w.Name,
		PreHook:     w.PreHook,
		PostHook:    w.PostHook,
		HookFailure: w.HookFailure,
		Paused:      w.Paused,
		Created:     w.Created,
		Updated:     w.Updated,
		Schedule:    Schedule{TZ: w.Schedule.TZ},
		Retention: snapshot.Rules{Last: w.Retention.Last, Hourly: w.Retention.Hourly, Daily: w.Retention.Daily,
			Weekly: w.Retention.Weekly, Monthly: w.Retention.Monthly, Yearly: w.Retention.Yearly},
	}
	for _, s := range w.Sources {
		q.Sources = append(q.Sources, Source(s))
	}
	var err error
	if w.Schedule.Every != "" {
		if q.Schedule.Every, err = ParseEvery(w.Schedule.Every); err != nil {
			return err
		}
	}
	for _, a := range w.Schedule.At {
		c, err := ParseClockTime(a)
		if err != nil {
			return err
		}
		q.Schedule.At = append(q.Schedule.At, c)
	}
	for _, d := range w.Schedule.Days {
		day, ok := parseDay(d)
		if !ok {
			return invalidf("days: unknown day %q", d)
		}
		q.Schedule.Days = append(q.Schedule.Days, day)
	}
	if w.Retention.Within != "" {
		if q.Retention.Within, err = snapshot.ParseSpan(w.Retention.Within); err != nil {
			return invalidf("retention: keep within: %w", err)
		}
	}
	if w.HookTimeout != "" {
		if q.HookTimeout, err = time.ParseDuration(w.HookTimeout); err != nil {
			return invalidf("hook timeout %q: not a duration (use e.g. 30s, 2m)", w.HookTimeout)
		}
	}
	*p = q
	return nil
}

type wireState struct {
	LastSlot            time.Time `json:"last_slot,omitzero"`
	LastStart           time.Time `json:"last_start,omitzero"`
	LastEnd             time.Time `json:"last_end,omitzero"`
	LastResult          Result    `json:"last_result,omitempty"`
	LastError           string    `json:"last_error,omitempty"`
	LastSuccess         time.Time `json:"last_success,omitzero"`
	LastSuccessDuration string    `json:"last_success_duration,omitempty"`
	LastPoint           string    `json:"last_point,omitempty"`
}

// MarshalJSON writes the state with times in UTC and the duration as a
// Go duration.
func (s State) MarshalJSON() ([]byte, error) {
	w := wireState{LastSlot: s.LastSlot.UTC(), LastStart: s.LastStart.UTC(), LastEnd: s.LastEnd.UTC(),
		LastResult: s.LastResult, LastError: s.LastError, LastSuccess: s.LastSuccess.UTC(), LastPoint: s.LastPoint}
	if s.LastSuccessDuration != 0 {
		w.LastSuccessDuration = s.LastSuccessDuration.String()
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads the state's JSON form, refusing unknown fields
// and results.
func (s *State) UnmarshalJSON(b []byte) error {
	var w wireState
	if err := strictJSON(b, &w); err != nil {
		return fmt.Errorf("policy state: %v", err)
	}
	switch w.LastResult {
	case "", Success, Failure, Canceled, Skipped:
	default:
		return fmt.Errorf("policy state: unknown result %q", w.LastResult)
	}
	t := State{LastSlot: w.LastSlot, LastStart: w.LastStart, LastEnd: w.LastEnd, LastResult: w.LastResult,
		LastError: w.LastError, LastSuccess: w.LastSuccess, LastPoint: w.LastPoint}
	if w.LastSuccessDuration != "" {
		d, err := time.ParseDuration(w.LastSuccessDuration)
		if err != nil {
			return fmt.Errorf("policy state: last success duration %q: %v", w.LastSuccessDuration, err)
		}
		t.LastSuccessDuration = d
	}
	*s = t
	return nil
}

// strictJSON decodes one JSON value into v, refusing unknown fields and
// trailing data.
func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("data after the JSON value")
	}
	return nil
}

// A stored object (a policy or its state) is an envelope:
//
//	{"version": 1, "policy": {...}, "blake3": "<hex>"}
//
// ("state" instead of "policy" for a state), where blake3 is the
// BLAKE3-256 of the body's compact JSON, so a damaged object is refused
// rather than read as another policy. The version comes first in every
// format to be; a reader refuses one it does not know.
const formatVersion = 1

// seal wraps body (JSON) in the envelope, under field.
func seal(field string, body []byte) ([]byte, error) {
	var c bytes.Buffer
	if err := json.Compact(&c, body); err != nil {
		return nil, err
	}
	sum := chunkstore.Sum(c.Bytes())
	env := fmt.Sprintf(`{"version":%d,%q:%s,"blake3":%q}`, formatVersion, field, c.Bytes(), hex.EncodeToString(sum[:]))
	var out bytes.Buffer
	if err := json.Indent(&out, []byte(env), "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// unseal checks the envelope and returns the body under field. what
// names the object in errors ("policy web01").
func unseal(what, field string, b []byte) ([]byte, error) {
	var env map[string]json.RawMessage
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, fmt.Errorf("%s: %w: not a JSON object (%v)", what, ErrDamaged, err)
	}
	var v int
	if raw, ok := env["version"]; !ok {
		return nil, fmt.Errorf("%s: %w: no format version", what, ErrDamaged)
	} else if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("%s: %w: format version %s", what, ErrDamaged, raw)
	}
	switch {
	case v < 1:
		return nil, fmt.Errorf("%s: %w: format version %d", what, ErrDamaged, v)
	case v > formatVersion:
		return nil, fmt.Errorf("%s: %w: version %d (this cairn knows version %d; a newer cairn wrote it)", what, ErrUnsupported, v, formatVersion)
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"blake3", field, "version"}; !slices.Equal(keys, want) {
		return nil, fmt.Errorf("%s: %w: fields %q, want %q", what, ErrDamaged, keys, want)
	}
	var sumHex string
	if err := json.Unmarshal(env["blake3"], &sumHex); err != nil {
		return nil, fmt.Errorf("%s: %w: checksum %s", what, ErrDamaged, env["blake3"])
	}
	var c bytes.Buffer
	if err := json.Compact(&c, env[field]); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", what, ErrDamaged, err)
	}
	sum := chunkstore.Sum(c.Bytes())
	if hex.EncodeToString(sum[:]) != sumHex {
		return nil, fmt.Errorf("%s: %w: checksum mismatch", what, ErrDamaged)
	}
	return c.Bytes(), nil
}

// encodePolicy is a policy's stored form.
func encodePolicy(p *Policy) ([]byte, error) {
	body, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return seal("policy", body)
}

// decodePolicy reads the stored form of the policy called name.
func decodePolicy(name string, b []byte) (*Policy, error) {
	what := "policy " + name
	body, err := unseal(what, "policy", b)
	if err != nil {
		return nil, err
	}
	var p Policy
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", what, ErrDamaged, err)
	}
	if p.Name != name {
		return nil, fmt.Errorf("%s: %w: it holds policy %q", what, ErrDamaged, p.Name)
	}
	if err := p.Check(); err != nil {
		return nil, fmt.Errorf("%s: %w: its definition fails a check: %v", what, ErrDamaged, err)
	}
	return &p, nil
}

func encodeState(s State) ([]byte, error) {
	body, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	return seal("state", body)
}

func decodeState(name string, b []byte) (State, error) {
	what := "state of policy " + name
	body, err := unseal(what, "state", b)
	if err != nil {
		return State{}, err
	}
	var s State
	if err := json.Unmarshal(body, &s); err != nil {
		return State{}, fmt.Errorf("%s: %w: %v", what, ErrDamaged, err)
	}
	return s, nil
}
