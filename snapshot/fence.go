package snapshot

import (
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/cairn-backup/cairn/index"
)

// fence lets garbage collection run beside backups and readers without a
// lock on the vault or a grace timer: the vault's one process knows all
// of its own work.
//
//   - A backup opens a session and notes in it every block it refers to,
//     found stored or written anew, before it asks the index whether the
//     block is there: refs.RLock held around note-then-ask.
//   - gc decides which blocks are dead in batches, each under refs.Lock:
//     a block a session noted is kept; the others lose their index entry,
//     so a backup asking after that stores the block again. A block is
//     therefore never referred to and then freed.
//   - A session that ends while a gc runs stays visible to it until the
//     gc ends, so its committed point's blocks are kept though gc listed
//     the points before the commit.
//   - A reader (a mount's point, a restore, an export) holds its point;
//     gc keeps the blocks of held points, deleted or not, until released.
//   - A user of a point (an NBD export a VM may boot from) holds it and
//     also keeps prune and delete from removing its record meanwhile.
type fence struct {
	refs sync.RWMutex

	mu       sync.Mutex
	sessions map[*session]bool
	retired  []*session // ended while a gc runs
	gcs      int        // gcs running
	holds    map[string]*hold
}

type session struct {
	mu   sync.Mutex
	seen *bloom
}

type hold struct {
	p    *Point
	n    int
	uses []*string // why each user uses it; a use is also one of n
}

func newFence() *fence {
	return &fence{sessions: map[*session]bool{}, holds: map[string]*hold{}}
}

// begin opens a session for a backup of about n blocks.
func (f *fence) begin(n int64) *session {
	s := &session{seen: newBloom(n+n/64+1024, 0.01, rand.Uint64())}
	f.mu.Lock()
	f.sessions[s] = true
	f.mu.Unlock()
	return s
}

// end closes a session; a gc running now still sees it.
func (f *fence) end(s *session) {
	f.mu.Lock()
	delete(f.sessions, s)
	if f.gcs > 0 {
		f.retired = append(f.retired, s)
	}
	f.mu.Unlock()
}

// refer notes that s refers to block h, then asks has (whether the vault
// holds a usable copy): the two are atomic with respect to gc's batches.
func (f *fence) refer(s *session, h index.Hash, has func(index.Hash) (bool, error)) (bool, error) {
	f.refs.RLock()
	defer f.refs.RUnlock()
	s.mu.Lock()
	s.seen.add(h)
	s.mu.Unlock()
	return has(h)
}

// startGC returns a function that reports whether some session, open or
// ended since, noted h; call it under refs.Lock. stop ends the gc.
func (f *fence) startGC() (noted func(index.Hash) bool, stop func()) {
	f.mu.Lock()
	f.gcs++
	f.mu.Unlock()
	noted = func(h index.Hash) bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		for s := range f.sessions {
			if s.has(h) {
				return true
			}
		}
		for _, s := range f.retired {
			if s.has(h) {
				return true
			}
		}
		return false
	}
	stop = func() {
		f.mu.Lock()
		if f.gcs--; f.gcs == 0 {
			f.retired = nil
		}
		f.mu.Unlock()
	}
	return noted, stop
}

func (s *session) has(h index.Hash) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen.has(h)
}

// hold keeps p's blocks from gc until the returned function is called.
func (f *fence) hold(p *Point) func() {
	name := p.Name()
	f.mu.Lock()
	h := f.holds[name]
	if h == nil {
		h = &hold{p: p}
		f.holds[name] = h
	}
	h.n++
	f.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			if h.n--; h.n == 0 {
				delete(f.holds, name)
			}
			f.mu.Unlock()
		})
	}
}

// use holds p as hold does and notes why, for inUse, until released.
func (f *fence) use(p *Point, why string) func() {
	release := f.hold(p)
	u := &why
	name := p.Name()
	f.mu.Lock()
	h := f.holds[name]
	h.uses = append(h.uses, u)
	f.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			h.uses = slices.DeleteFunc(h.uses, func(x *string) bool { return x == u })
			f.mu.Unlock()
			release()
		})
	}
}

// inUse says why the point named name is in use, or "" when it is not.
func (f *fence) inUse(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if h := f.holds[name]; h != nil && len(h.uses) > 0 {
		return *h.uses[0]
	}
	return ""
}

// held lists the points readers hold.
func (f *fence) held() []*Point {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*Point, 0, len(f.holds))
	for _, h := range f.holds {
		out = append(out, h.p)
	}
	return out
}

// Hold keeps p's bytes readable, even should p be deleted meanwhile,
// until the returned function is called: for a mount's point, a restore,
// an export. Garbage collection keeps the blocks of held points.
func (v *Vault) Hold(p *Point) (release func()) { return v.fence.hold(p) }

// Use holds p as Hold does and, until released, keeps Prune from
// removing it (the point is kept, for the reason why) and Delete from
// deleting it (ErrInUse): for a point something runs from, such as a VM
// booted from its NBD export, which needs its record to outlive the
// reader. why says who uses it, e.g. "exported over NBD (job 01k2x7v9q)".
func (v *Vault) Use(p *Point, why string) (release func()) { return v.fence.use(p, why) }
