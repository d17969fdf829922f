package policy

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/snapshot"
)

// FuzzPolicy feeds arbitrary bytes to the decoders of what a vault
// stores of policies (the sealed policy and its state) and to the JSON
// form the API takes: an error wrapping ErrDamaged or ErrInvalid, or a
// policy that passes its checks and encodes back to itself; never a
// panic. A decoded policy's schedule must answer Next and Due in bounded
// time.
func FuzzPolicy(f *testing.F) {
	p := &Policy{Name: "web01", Sources: []Source{{Disk: "vda", Path: "/dev/vg0/web01"}},
		Schedule:  Schedule{At: []ClockTime{{2, 0}, {14, 30}}, Days: []time.Weekday{time.Monday}, TZ: "Europe/Berlin"},
		Retention: snapshot.Rules{Daily: 7, Within: snapshot.Span{Days: 3}},
		PreHook:   []string{"fsfreeze", "-f", "/srv"}, HookTimeout: time.Minute}
	p.SetDefaults()
	sealed, err := encodePolicy(p)
	if err != nil {
		f.Fatal(err)
	}
	plain, _ := json.Marshal(p)
	state, _ := encodeState(State{LastSlot: time.Unix(1700000000, 0), LastResult: Success})
	every, _ := json.Marshal(&Policy{Name: "six", Sources: []Source{{Path: "/x"}}, Schedule: Schedule{Every: 6 * time.Hour},
		Retention: snapshot.Rules{Last: 3}})
	for _, seed := range [][]byte{sealed, plain, state, every} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// A state a newer cairn wrote is unsupported, not damaged.
		if _, err := decodeState("web01", b); err != nil && !errors.Is(err, ErrDamaged) && !errors.Is(err, ErrUnsupported) {
			t.Fatalf("state error without ErrDamaged or ErrUnsupported: %v", err)
		}
		check := func(q *Policy) {
			if err := q.Check(); err != nil {
				return
			}
			back, err := json.Marshal(q)
			if err != nil {
				t.Fatalf("a checked policy does not encode: %v", err)
			}
			var again Policy
			if err := json.Unmarshal(back, &again); err != nil {
				t.Fatalf("a policy's own JSON does not decode: %v\n%s", err, back)
			}
			now := time.Unix(1800000000, 0)
			for i := 0; i < 3; i++ {
				next := q.Schedule.Next(now)
				if !next.IsZero() && !next.After(now) {
					t.Fatalf("Next(%v) = %v", now, next)
				}
				q.Due(now, State{LastSlot: now.Add(-48 * time.Hour)})
				if next.IsZero() {
					break
				}
				now = next
			}
		}
		if q, err := decodePolicy("web01", b); err == nil {
			check(q)
		} else if !errors.Is(err, ErrDamaged) && !errors.Is(err, ErrUnsupported) {
			t.Fatalf("policy error without ErrDamaged or ErrUnsupported: %v", err)
		}
		var q Policy
		if err := json.Unmarshal(b, &q); err == nil {
			check(&q)
		} else if !errors.Is(err, ErrInvalid) {
			var se *json.SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("JSON error without ErrInvalid: %v", err)
			}
		}
	})
}
