package snapshot

import (
	"context"
	"sync"
)

// resourceLocks lets one backup of a resource run at a time: a second
// waits for the first, so it takes the first's point as its parent and
// the chain stays a line.
type resourceLocks struct {
	mu   sync.Mutex
	busy map[string]chan struct{} // closed when the backup ends
}

// lock waits until no backup of resource runs, or ctx ends.
func (l *resourceLocks) lock(ctx context.Context, resource string) (unlock func(), err error) {
	for {
		l.mu.Lock()
		if l.busy == nil {
			l.busy = map[string]chan struct{}{}
		}
		done, running := l.busy[resource]
		if !running {
			done = make(chan struct{})
			l.busy[resource] = done
			l.mu.Unlock()
			return func() {
				l.mu.Lock()
				delete(l.busy, resource)
				l.mu.Unlock()
				close(done)
			}, nil
		}
		l.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}
