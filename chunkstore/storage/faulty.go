package storage

import (
	"context"
	"slices"
	"sync"
)

// Faulty wraps a Storage and injects faults into the calls its rules
// match, for tests of the layers above: errors, short writes, failed
// commits and slow calls. With no rules it is the wrapped storage. Rules
// may be added and removed while calls run; a call sees the rules as they
// are when it starts. A call goes through the rules in the order they
// were added: each rule it matches counts it (toward Skip), and the first
// that fires decides the call's fault; later rules do not see the call.
type Faulty struct {
	s Storage

	mu     sync.Mutex
	rules  []*rule
	nextID RuleID
	calls  map[Op]int
}

var _ Storage = (*Faulty)(nil)

// NewFaulty wraps s, with no rules.
func NewFaulty(s Storage) *Faulty { return &Faulty{s: s, calls: map[Op]int{}} }

// Unwrap returns the wrapped storage, for tests that look past the faults.
func (f *Faulty) Unwrap() Storage { return f.s }

// Add adds a rule, after those already there.
func (f *Faulty) Add(r Rule) RuleID {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	f.rules = append(f.rules, &rule{Rule: r, id: f.nextID})
	return f.nextID
}

// Remove removes a rule; removing one that is gone is a no-op.
func (f *Faulty) Remove(id RuleID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = slices.DeleteFunc(f.rules, func(r *rule) bool { return r.id == id })
}

// Clear removes every rule.
func (f *Faulty) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = nil
}

// Fired returns how many times a rule fired (0 for one removed).
func (f *Faulty) Fired(id RuleID) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.rules {
		if r.id == id {
			return r.fired
		}
	}
	return 0
}

// Calls returns how many calls of op were made, faulted or not; AnyOp
// counts them all.
func (f *Faulty) Calls(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if op != AnyOp {
		return f.calls[op]
	}
	n := 0
	for _, c := range f.calls {
		n += c
	}
	return n
}

// fault counts a call and returns the fault of the first rule that fires
// for it.
func (f *Faulty) fault(op Op, kind Kind, name string) (Fault, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	for _, r := range f.rules {
		if !r.matches(op, kind, name) {
			continue
		}
		r.seen++
		if r.seen <= r.Skip || r.Times > 0 && r.fired >= r.Times {
			continue
		}
		r.fired++
		return r.Fault, true
	}
	return Fault{}, false
}

// inject counts a call and applies its fault, if any: nil lets the call
// go on to the wrapped storage.
func (f *Faulty) inject(ctx context.Context, op Op, kind Kind, name string) error {
	ft, ok := f.fault(op, kind, name)
	if !ok {
		return nil
	}
	return ft.apply(ctx, op, kind, name)
}

func (f *Faulty) Put(ctx context.Context, kind Kind, name string, data []byte) error {
	if err := f.inject(ctx, OpPut, kind, name); err != nil {
		return err // a short write too: Put is atomic, so nothing is stored
	}
	return f.s.Put(ctx, kind, name, data)
}

func (f *Faulty) Create(ctx context.Context, kind Kind, name string) (Writer, error) {
	if err := f.inject(ctx, OpCreate, kind, name); err != nil {
		return nil, err
	}
	w, err := f.s.Create(ctx, kind, name)
	if err != nil {
		return nil, err
	}
	return &faultyWriter{f: f, ctx: ctx, kind: kind, name: name, w: w}, nil
}

func (f *Faulty) Get(ctx context.Context, kind Kind, name string) ([]byte, error) {
	if err := f.inject(ctx, OpGet, kind, name); err != nil {
		return nil, err
	}
	return f.s.Get(ctx, kind, name)
}

func (f *Faulty) ReadAt(ctx context.Context, kind Kind, name string, p []byte, off int64) error {
	if err := f.inject(ctx, OpReadAt, kind, name); err != nil {
		return err
	}
	return f.s.ReadAt(ctx, kind, name, p, off)
}

func (f *Faulty) Stat(ctx context.Context, kind Kind, name string) (ObjectInfo, error) {
	if err := f.inject(ctx, OpStat, kind, name); err != nil {
		return ObjectInfo{}, err
	}
	return f.s.Stat(ctx, kind, name)
}

func (f *Faulty) List(ctx context.Context, kind Kind, fn func(ObjectInfo) error) error {
	if err := f.inject(ctx, OpList, kind, ""); err != nil {
		return err
	}
	return f.s.List(ctx, kind, fn)
}

func (f *Faulty) Delete(ctx context.Context, kind Kind, name string) error {
	if err := f.inject(ctx, OpDelete, kind, name); err != nil {
		return err
	}
	return f.s.Delete(ctx, kind, name)
}

// Close closes the wrapped storage.
func (f *Faulty) Close() error { return f.s.Close() }

// faultyWriter injects faults into Write and Commit.
type faultyWriter struct {
	f    *Faulty
	ctx  context.Context // of Create
	kind Kind
	name string
	w    Writer
}

func (w *faultyWriter) Write(p []byte) (int, error) {
	ft, ok := w.f.fault(OpWrite, w.kind, w.name)
	if !ok {
		return w.w.Write(p)
	}
	if !ft.short {
		if err := ft.apply(w.ctx, OpWrite, w.kind, w.name); err != nil {
			return 0, err
		}
		return w.w.Write(p)
	}
	n, err := w.w.Write(p[:min(ft.n, max(len(p)-1, 0))])
	if err != nil {
		return n, err
	}
	return n, ft.injected(OpWrite, w.kind, w.name)
}

func (w *faultyWriter) Commit(ctx context.Context) error {
	if err := w.f.inject(ctx, OpCommit, w.kind, w.name); err != nil {
		w.w.Abort() // as a failed fsync: nothing becomes visible
		return err
	}
	return w.w.Commit(ctx)
}

func (w *faultyWriter) Abort() error { return w.w.Abort() }
