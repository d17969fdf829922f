// Package policy holds the backup policies the daemon runs: their
// definition and its checks, how they are stored, their schedules, and
// the running of their hooks. The daemon's scheduler, jobs and API are
// built on it; this package has no clock of its own (every time is
// passed in) and starts nothing but hook processes.
//
// Terms:
//   - policy: a named definition (Policy): sources, a schedule,
//     retention rules, pre and post hooks. A policy backs up into the
//     resource of its name, and applies its rules to that resource
//     after each successful backup.
//   - slot: an instant a schedule names (Schedule.Next, Schedule.Prev).
//     Every schedules have slots on a fixed grid of elapsed time since
//     the Unix epoch; At schedules have one slot per listed time of day
//     on each allowed local date in the policy's time zone.
//   - run: one execution of a policy (pre hook, backup, retention, post
//     hook), for a slot (scheduled) or by hand (cairn run).
//   - state: what the daemon remembers of a policy's runs (State), kept
//     apart from the definition.
//
// Storage: policy NAME is the object NAME of kind storage.Policies, its
// state the object NAME@state ('@' never occurs in a policy name). Each
// is a JSON envelope {"version", "policy" or "state", "blake3"}: the
// version is checked first (ErrUnsupported for one this cairn does not
// know), then a BLAKE3 checksum of the body (ErrDamaged), then the body,
// whose unknown fields are refused. The body is readable JSON (see
// encode.go), the same form the API and --json use.
//
// Invariants:
//   - A policy is checked when it is set, not at its first slot: Check
//     refuses a bad definition and Validate what would fail on this
//     machine (missing or unreadable sources, hooks missing or not
//     executable). Errors that are the user's mistakes wrap ErrInvalid.
//   - Nothing here reads the clock or the environment: Due and Next take
//     the time, Validate and RunHook take the PATH.
//   - A slot runs at most once, and a slot is never skipped: a time of
//     day the clock skips (spring forward) runs when the clock jumps
//     past it, one that it repeats (fall back) runs at its first
//     occurrence only, and however many slots pass while the daemon is
//     down, one run is due for the latest of them (Due).
//   - Saving a definition and saving a state never touch the same
//     object, so editing a policy never races with a run's end.
//   - One damaged policy never hides the others (List).
//
// Runs (the contract for the daemon's runner): the pre hook runs first;
// if it fails under Abort the backup is skipped (result skipped), under
// Continue the failure is logged and the backup goes ahead. The post
// hook runs at the end of every run, whatever its outcome (a skipped one
// too), so what the pre hook froze, even partly, is thawed; its failure
// under Abort makes the run a failure (the point it made stays).
// Retention runs after a successful backup only. Each hook has
// HookTimeout.
//
// Hooks are argument vectors run without a shell (write "sh", "-c",
// "..." for one) by RunHook, with the daemon's identity, in "/", with
// stdin from /dev/null and their stdout and stderr in the job's log, in
// a process group of their own that is ended whole (SIGTERM, then
// SIGKILL after HookGrace) on timeout or cancel. Their environment is
// exactly this (HookEnv builds it), nothing else inherited:
//
//	CAIRN_POLICY    the policy's name
//	CAIRN_RESOURCE  the resource backed up (the policy's name)
//	CAIRN_VAULT     the vault's directory
//	CAIRN_HOOK      pre or post
//	CAIRN_DISKS     the sources, space-separated DISK=PATH (paths with
//	                white space are refused by Check for this reason)
//	CAIRN_RESULT    post hooks only: success, failure, canceled or
//	                skipped (see Result)
//	CAIRN_POINT     post hooks only, when the run made a point:
//	                RESOURCE@ID
//	PATH, HOME, LANG  the daemon's, when set
package policy
