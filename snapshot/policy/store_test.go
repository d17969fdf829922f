package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/chunkstore/storage"
	"github.com/cairn-backup/cairn/snapshot"
)

func TestStoreRoundTrip(t *testing.T) {
	ctx := t.Context()
	st := storage.NewMem()
	every := testPolicy()
	every.Name = "db"
	every.Schedule = Schedule{Every: 90 * time.Minute}
	every.Retention = snapshot.Rules{Last: 3, Hourly: 24, Monthly: 12, Yearly: 2, Within: snapshot.Span{Years: 1, Months: 6}}
	every.PreHook, every.PostHook = nil, nil
	every.HookFailure = Continue
	every.HookTimeout = 5 * time.Minute
	every.Paused = true
	for _, p := range []*Policy{testPolicy(), every} {
		if err := Save(ctx, st, p); err != nil {
			t.Fatal(err)
		}
		got, err := Load(ctx, st, p.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, p) {
			t.Errorf("Load = %+v\nwant   %+v", got, p)
		}
	}
	// Save wrote the defaults out.
	p, err := Load(ctx, st, "web01")
	if err != nil {
		t.Fatal(err)
	}
	if p.HookTimeout != DefaultHookTimeout || p.HookFailure != Abort || p.Sources[1].Disk != "data" || p.Schedule.At[0] != (ClockTime{2, 0}) {
		t.Errorf("stored without its defaults: %+v", p)
	}
	if p, err := Load(ctx, st, "db"); err != nil || p.Schedule.TZ != LocalTZ {
		t.Errorf("an empty TZ is stored as %q (%v), want %q", p.Schedule.TZ, err, LocalTZ)
	}

	// The stored form is readable JSON.
	b, err := st.Get(ctx, storage.Policies, "web01")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"version": 1`, `"blake3": "`, `"at": [`, `"02:00"`, `"days": [`, `"mon"`, `"tz": "Europe/Berlin"`,
		`"keep_daily": 7`, `"keep_within": "14d"`, `"hook_timeout": "1m"`, `"hook_failure": "abort"`, `"created": "2026-11-21T10:00:00Z"`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("stored form lacks %s:\n%s", want, b)
		}
	}
	b, _ = st.Get(ctx, storage.Policies, "db")
	for _, want := range []string{`"every": "1h30m"`, `"keep_within": "1y6m"`, `"paused": true`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("stored form lacks %s:\n%s", want, b)
		}
	}

	list, bad, err := List(ctx, st)
	if err != nil || len(bad) != 0 || len(list) != 2 || list[0].Name != "db" || list[1].Name != "web01" {
		t.Fatalf("List = %v, %v, %v; want db and web01", list, bad, err)
	}
}

func TestSaveRefuses(t *testing.T) {
	ctx := t.Context()
	st := storage.NewMem()
	p := testPolicy()
	p.Retention = snapshot.Rules{}
	if err := Save(ctx, st, p); !errors.Is(err, ErrInvalid) || !errors.Is(err, snapshot.ErrNoRules) {
		t.Errorf("Save of a policy without rules: %v", err)
	}
	p = testPolicy()
	p.Created = time.Time{}
	if err := Save(ctx, st, p); err == nil || errors.Is(err, ErrInvalid) {
		t.Errorf("Save without a creation time: %v, want a plain error", err)
	}
	n := 0
	_ = st.List(ctx, storage.Policies, func(storage.ObjectInfo) error { n++; return nil })
	if n != 0 {
		t.Errorf("%d objects written by refused saves", n)
	}
}

func TestLoadMissing(t *testing.T) {
	ctx := t.Context()
	st := storage.NewMem()
	if _, err := Load(ctx, st, "web01"); !errors.Is(err, ErrNotFound) || err.Error() != `no such policy "web01"` {
		t.Errorf("Load of a missing policy: %v", err)
	}
	if err := Delete(ctx, st, "web01"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete of a missing policy: %v", err)
	}
	if _, err := Load(ctx, st, "../web01"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Load of a bad name: %v", err)
	}
}

// sealed is a stored policy object with its body changed by edit, and
// its checksum made right again.
func sealed(t testing.TB, p *Policy, edit func(map[string]any)) []byte {
	t.Helper()
	body, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if body, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	b, err := seal("policy", body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLoadDamaged(t *testing.T) {
	ctx := t.Context()
	good, err := encodePolicy(testPolicy())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		data []byte
		is   error
		want string
	}{
		{"empty", []byte{}, ErrDamaged, "not a JSON object"},
		{"truncated", good[:len(good)/2], ErrDamaged, "not a JSON object"},
		{"not JSON", []byte("keep_daily=7"), ErrDamaged, "not a JSON object"},
		{"a bit flipped", bytes.Replace(good, []byte(`"keep_daily": 7`), []byte(`"keep_daily": 3`), 1), ErrDamaged, "checksum mismatch"},
		{"no version", bytes.Replace(good, []byte(`"version": 1`), []byte(`"versio": 1`), 1), ErrDamaged, "no format version"},
		{"a version not a number", bytes.Replace(good, []byte(`"version": 1`), []byte(`"version": "1"`), 1), ErrDamaged, "format version"},
		{"a newer version", bytes.Replace(good, []byte(`"version": 1`), []byte(`"version": 2`), 1), ErrUnsupported,
			"policy web01: unsupported policy format: version 2 (this cairn knows version 1"},
		{"version 0", bytes.Replace(good, []byte(`"version": 1`), []byte(`"version": 0`), 1), ErrDamaged, "format version 0"},
		{"no checksum", bytes.Replace(good, []byte(`"blake3"`), []byte(`"sha256"`), 1), ErrDamaged, "fields"},
		{"another policy's object", sealed(t, testPolicy(), func(m map[string]any) { m["name"] = "db" }), ErrDamaged, `it holds policy "db"`},
		{"an unknown field", sealed(t, testPolicy(), func(m map[string]any) { m["exclude"] = "/tmp" }), ErrDamaged, `unknown field "exclude"`},
		{"a malformed schedule", sealed(t, testPolicy(), func(m map[string]any) { m["schedule"] = map[string]any{"every": "often"} }), ErrDamaged, "not an interval"},
		{"a definition Check refuses", sealed(t, testPolicy(), func(m map[string]any) { m["retention"] = map[string]any{} }), ErrDamaged, "no retention rule"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := storage.NewMem()
			if err := st.Put(ctx, storage.Policies, "web01", c.data); err != nil {
				t.Fatal(err)
			}
			_, err := Load(ctx, st, "web01")
			switch {
			case !errors.Is(err, c.is):
				t.Fatalf("Load: %v, want %v", err, c.is)
			case errors.Is(err, ErrInvalid):
				t.Fatalf("Load: %v wraps ErrInvalid: a damaged vault is not a command-line mistake", err)
			case !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "policy web01: "):
				t.Fatalf("Load: %q, want it to start with the policy and say %q", err, c.want)
			case strings.Contains(err.Error(), "\n"):
				t.Fatalf("Load: %q is more than one line", err)
			}
		})
	}
}

// One damaged policy does not hide the others; states are not policies.
func TestListDamaged(t *testing.T) {
	ctx := t.Context()
	st := storage.NewMem()
	for _, name := range []string{"a", "c", "e"} {
		p := testPolicy()
		p.Name = name
		if err := Save(ctx, st, p); err != nil {
			t.Fatal(err)
		}
		if err := SaveState(ctx, st, name, State{LastResult: Success}); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range map[string]string{"b": "{", "d": `{"version": 9}`, "_x": "{}"} {
		if err := st.Put(ctx, storage.Policies, name, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	list, bad, err := List(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range list {
		names = append(names, p.Name)
	}
	if strings.Join(names, ",") != "a,c,e" {
		t.Errorf("List = %v, want a,c,e", names)
	}
	if len(bad) != 3 || bad[0].Name != "_x" || bad[1].Name != "b" || bad[2].Name != "d" {
		t.Fatalf("bad = %v, want _x, b, d", bad)
	}
	for _, b := range bad {
		if !errors.Is(b.Err, ErrDamaged) && !errors.Is(b.Err, ErrUnsupported) {
			t.Errorf("bad %s: %v", b.Name, b.Err)
		}
	}
	if !errors.Is(bad[2].Err, ErrUnsupported) {
		t.Errorf("bad d: %v, want ErrUnsupported", bad[2].Err)
	}

	// A storage that fails a read: the one policy is bad, the others listed.
	fs := &failGet{Storage: st, name: "c"}
	list, bad, err = List(ctx, fs)
	if err != nil || len(list) != 2 || len(bad) != 4 || bad[2].Name != "c" {
		t.Errorf("List with c unreadable = %d policies, %v, %v", len(list), bad, err)
	}
	// A canceled ctx fails the listing itself.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := List(cctx, st); err == nil {
		t.Errorf("List with a canceled ctx: no error")
	}
}

func TestDelete(t *testing.T) {
	ctx := t.Context()
	st := storage.NewMem()
	for _, name := range []string{"web01", "web02"} {
		p := testPolicy()
		p.Name = name
		if err := Save(ctx, st, p); err != nil {
			t.Fatal(err)
		}
		if err := SaveState(ctx, st, name, State{LastResult: Failure}); err != nil {
			t.Fatal(err)
		}
	}
	if err := Delete(ctx, st, "web01"); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(ctx, st, "web01"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load after Delete: %v", err)
	}
	if s, err := LoadState(ctx, st, "web01"); err != nil || s != (State{}) {
		t.Errorf("LoadState after Delete = %+v, %v; want none", s, err)
	}
	if s, err := LoadState(ctx, st, "web02"); err != nil || s.LastResult != Failure {
		t.Errorf("the other policy's state: %+v, %v", s, err)
	}
	if _, err := Load(ctx, st, "web02"); err != nil {
		t.Errorf("the other policy: %v", err)
	}
}

func TestState(t *testing.T) {
	ctx := t.Context()
	st := storage.NewMem()
	if s, err := LoadState(ctx, st, "web01"); err != nil || s != (State{}) {
		t.Fatalf("LoadState of a policy that never ran = %+v, %v", s, err)
	}
	berlin := zone(t, "Europe/Berlin")
	want := State{
		LastSlot:            time.Date(2026, 11, 21, 2, 0, 0, 0, time.UTC),
		LastStart:           time.Date(2026, 11, 21, 2, 0, 1, 5, time.UTC),
		LastEnd:             time.Date(2026, 11, 21, 2, 3, 31, 0, time.UTC),
		LastResult:          Success,
		LastSuccess:         time.Date(2026, 11, 21, 2, 3, 31, 0, time.UTC),
		LastSuccessDuration: 3*time.Minute + 30*time.Second,
		LastPoint:           "web01@20261121T020002Z",
	}
	in := want
	in.LastSlot = in.LastSlot.In(berlin) // stored in UTC whatever its zone
	if err := SaveState(ctx, st, "web01", in); err != nil {
		t.Fatal(err)
	}
	// Saving the definition leaves the state alone, and the reverse.
	if err := Save(ctx, st, testPolicy()); err != nil {
		t.Fatal(err)
	}
	got, err := LoadState(ctx, st, "web01")
	if err != nil || got != want {
		t.Fatalf("LoadState = %+v, %v\nwant %+v", got, err, want)
	}
	if _, err := Load(ctx, st, "web01"); err != nil {
		t.Fatal(err)
	}
	b, _ := st.Get(ctx, storage.Policies, "web01@state")
	for _, w := range []string{`"state": {`, `"last_result": "success"`, `"last_success_duration": "3m30s"`, `"last_slot": "2026-11-21T02:00:00Z"`} {
		if !bytes.Contains(b, []byte(w)) {
			t.Errorf("stored state lacks %s:\n%s", w, b)
		}
	}
	for _, c := range []struct {
		name string
		data string
		is   error
	}{
		{"damaged", strings.Replace(string(b), "success", "failure", 1), ErrDamaged},
		{"newer", strings.Replace(string(b), `"version": 1`, `"version": 3`, 1), ErrUnsupported},
		{"a policy object as a state", string(mustEncode(t)), ErrDamaged},
	} {
		if err := st.Put(ctx, storage.Policies, "web01@state", []byte(c.data)); err != nil {
			t.Fatal(err)
		}
		if s, err := LoadState(ctx, st, "web01"); !errors.Is(err, c.is) || s != (State{}) || !strings.HasPrefix(err.Error(), "state of policy web01: ") {
			t.Errorf("%s: LoadState = %+v, %v; want %v", c.name, s, err, c.is)
		}
	}
	if err := SaveState(ctx, st, "bad name", want); !errors.Is(err, ErrInvalid) {
		t.Errorf("SaveState of a bad name: %v", err)
	}
}

func mustEncode(t testing.TB) []byte {
	b, err := encodePolicy(testPolicy())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The JSON form is the one the API sends: it reads back as it was, and
// refuses what it does not know.
func TestPolicyJSON(t *testing.T) {
	p := testPolicy()
	p.SetDefaults()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var q Policy
	if err := json.Unmarshal(b, &q); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&q, p) {
		t.Errorf("round trip = %+v\nwant %+v", q, *p)
	}
	for _, c := range []struct{ in, want string }{
		{`{"name": "x", "color": "red"}`, `unknown field "color"`},
		{`{"name": "x", "schedule": {"at": ["25:00"]}}`, "not a time of day"},
		{`{"name": "x", "schedule": {"days": ["someday"]}}`, `unknown day "someday"`},
		{`{"name": "x", "retention": {"keep_within": "7x"}}`, "keep within"},
		{`{"name": "x", "hook_timeout": "soon"}`, `hook timeout "soon"`},
	} {
		var q Policy
		wantInvalid(t, json.Unmarshal([]byte(c.in), &q), c.want)
	}
}

// failGet is a storage whose Get of one object fails.
type failGet struct {
	storage.Storage
	name string
}

func (f *failGet) Get(ctx context.Context, kind storage.Kind, name string) ([]byte, error) {
	if name == f.name {
		return nil, errors.New("policy " + name + ": input/output error")
	}
	return f.Storage.Get(ctx, kind, name)
}
