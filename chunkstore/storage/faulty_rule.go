package storage

import (
	"context"
	"fmt"
	"io"
	"path"
	"syscall"
	"time"
)

// Op names a call that a Faulty rule can match.
type Op string

// The calls of Storage and Writer a rule can match. Abort and Close are
// never faulted: cleaning up must work.
const (
	AnyOp    Op = "" // matches every call
	OpPut    Op = "put"
	OpCreate Op = "create"
	OpWrite  Op = "write" // Writer.Write
	OpCommit Op = "commit"
	OpGet    Op = "get"
	OpReadAt Op = "readat"
	OpStat   Op = "stat"
	OpList   Op = "list"
	OpDelete Op = "delete"
)

// Rule says which calls of a Faulty fail, and how. The zero value of each
// filter matches everything.
type Rule struct {
	Op   Op   // AnyOp: every call
	Kind Kind // "": every kind
	// Name is a path.Match pattern for the object's name; "" matches every
	// name. List has no name, so only "" matches it.
	Name string
	// Skip lets the first Skip matching calls through; then the rule fires
	// on the next Times of them, or on all of them when Times is 0. A rule
	// that has fired Times times lets every call through.
	Skip, Times int
	Fault       Fault
}

// RuleID identifies a rule added to a Faulty.
type RuleID int

// Fault is what a firing rule does to the call: make one with FaultErr,
// FaultShortWrite or FaultDelay. The zero Fault fails with syscall.EIO.
type Fault struct {
	short bool          // a short write
	n     int           // bytes a short write writes
	err   error         // the error the call fails with
	delay time.Duration // holds the call back, then lets it go on
}

// FaultErr makes the call fail with err (syscall.EIO if nil) without
// reaching the wrapped storage: nothing is stored, read or deleted. On
// Commit it is a failed commit, as a failed fsync: the object is
// discarded and nothing becomes visible. An injected ENOSPC or EDQUOT
// wraps ErrNoSpace too, as Dir's do.
func FaultErr(err error) Fault { return Fault{err: err} }

// FaultShortWrite makes Writer.Write write only the first n bytes of p
// (fewer than len(p), so at most len(p)-1) to the wrapped writer and fail
// with err (io.ErrShortWrite if nil), as a disk filling up mid-write does.
// Put, being atomic, fails whole: nothing is stored. Other calls fail
// with err as FaultErr does.
func FaultShortWrite(n int, err error) Fault {
	if err == nil {
		err = io.ErrShortWrite
	}
	return Fault{short: true, n: max(n, 0), err: err}
}

// FaultDelay holds the call back for d, then lets it go on to the wrapped
// storage, as a slow disk or network does. A ctx done meanwhile ends the
// call with ctx's error, without reaching the wrapped storage (for
// Writer.Write, the ctx of Create).
func FaultDelay(d time.Duration) Fault { return Fault{delay: d} }

func (ft Fault) String() string {
	switch {
	case ft.delay > 0:
		return fmt.Sprintf("delay %v", ft.delay)
	case ft.short:
		return fmt.Sprintf("short write of %d bytes, then %v", ft.n, ft.err)
	}
	return fmt.Sprintf("error %v", ft.error())
}

func (ft Fault) error() error {
	if ft.err == nil {
		return syscall.EIO
	}
	return ft.err
}

// apply waits out a delay, or returns the error the call fails with; nil
// lets the call go on.
func (ft Fault) apply(ctx context.Context, op Op, kind Kind, name string) error {
	if ft.delay <= 0 {
		return ft.injected(op, kind, name)
	}
	t := time.NewTimer(ft.delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		if op == OpList {
			return listError(kind, ctx.Err())
		}
		return objectError(kind, name, ctx.Err())
	}
}

// injected is the error of an error or short-write fault, worded and
// wrapped as a backend's own.
func (ft Fault) injected(op Op, kind Kind, name string) error {
	err := fmt.Errorf("injected fault in %s: %w", op, ft.error())
	if op == OpList {
		return listError(kind, err)
	}
	return writeError(kind, name, err)
}

// rule is an added Rule and its counts.
type rule struct {
	Rule
	id    RuleID
	seen  int // matching calls
	fired int
}

func (r *rule) matches(op Op, kind Kind, name string) bool {
	if r.Op != AnyOp && r.Op != op || r.Kind != "" && r.Kind != kind {
		return false
	}
	if r.Name == "" {
		return true
	}
	ok, err := path.Match(r.Name, name)
	return ok && err == nil && op != OpList
}
