package policy

import "time"

// Result is how a run ended, as State records it and post hooks see it
// (CAIRN_RESULT).
type Result string

const (
	Success  Result = "success"  // the backup made its point (and retention ran)
	Failure  Result = "failure"  // the backup, or a hook under Abort, failed
	Canceled Result = "canceled" // the run was canceled (by the user or the daemon stopping)
	Skipped  Result = "skipped"  // no backup was attempted: the pre hook failed under Abort
)

// State is what the daemon remembers of a policy's runs. It is stored
// apart from the definition (SaveState), so editing a policy never races
// with a run recording its end.
type State struct {
	// LastSlot is the slot of the latest scheduled run. The runner
	// records it when the run starts, before anything else, so a slot
	// runs at most once even if the daemon dies during its run. Runs
	// started by hand (cairn run) leave it alone.
	LastSlot time.Time
	// LastStart and LastEnd bound the latest run, scheduled or by hand;
	// LastEnd is zero while it runs (or when the daemon died during it).
	LastStart, LastEnd time.Time
	// LastResult and LastError say how the latest run ended.
	LastResult Result
	LastError  string
	// LastSuccess is when the latest successful run ended, and
	// LastSuccessDuration how long it took.
	LastSuccess         time.Time
	LastSuccessDuration time.Duration
	// LastPoint names the latest point a run made (RESOURCE@ID).
	LastPoint string
}

// Due reports whether a scheduled run is due at now, and for which slot:
// the latest slot at or before now that is after both st.LastSlot and
// p.Created. However many slots were missed (the daemon was down, the
// machine asleep, the policy paused), that is one run, for the latest
// of them. A policy that never ran is first due at its first slot after
// Created, not at once. A clock set back never repeats a slot: slots
// before LastSlot are not due. A paused policy, or one whose schedule
// Check refuses, is never due.
//
// When the answer is no, the caller sleeps until p.Schedule.Next(now)
// and asks again.
func (p *Policy) Due(now time.Time, st State) (slot time.Time, due bool) {
	if p.Paused {
		return time.Time{}, false
	}
	s := p.Schedule.Prev(now)
	if s.IsZero() || !s.After(st.LastSlot) || !s.After(p.Created) {
		return time.Time{}, false
	}
	return s, true
}
