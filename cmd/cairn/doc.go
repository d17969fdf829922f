// Command cairn backs up disks into a deduplicated vault whose every
// point can be restored, verified, exported and mounted.
//
// Layout: one file per command (cmd_*.go). newXCommand builds the flags
// into a typed request (paths made absolute); runX (or a function named
// for what it answers: listPoints, showPoint, ...) is the compute half:
// it does the work against a *snapshot.Vault and returns a view, the
// struct --json prints; renderX is the render half: it prints a view as
// text or JSON with the user's terminal, time zone and --quiet (cmdEnv
// carries them). Compute runs where the vault is open, render always in
// the user's process, so output is the same with or without a daemon.
//
// Processes: a long-running cairn (daemon, mount) owns the vault and
// serves a versioned HTTP API on VAULT/cairn.sock (daemon.go, server*.go;
// API.md documents it). Every other command looks for that socket
// (client.go) and, when a daemon answers, calls its typed endpoints:
// quick reads are GETs answering views, cat and export -o - stream bytes,
// and work runs as jobs (jobs.go) whose events the command follows; a
// job's kind (api.go: jobKinds) runs the same compute half as the
// command without a daemon (dispatch.go), which opens the vault itself.
//
// Jobs: every backup, restore, export, verify, prune, gc, delete, pin,
// unpin and policy run the daemon runs is a job, with an ID, a kind, a
// target, a trigger (manual, or schedule), a state, progress, a bounded
// log and a result. jobManager runs and remembers them; cairn jobs, job
// show and cancel talk to it.
//
// Policies (snapshot/policy holds their model and storage): cmd_policy.go
// edits them through the API; policyrun.go runs one (freeze hook, backup,
// thaw hook, retention, gc when worth it), one run of a policy at a time
// per vault whoever starts it (policyRuns), recording each run's start
// and end in the policy's state; scheduler.go starts the runs their
// schedules make due, as "run" jobs, from the daemon (daemon.go), which
// also serves Prometheus metrics on --listen (metrics.go). cairn status
// shows the daemon, its running jobs and every policy.
//
// Exit codes: 0 success, 1 failure (one "cairn: ..." line on stderr),
// 2 wrong command line, 130 interrupted.
//
// This is the only package that reads the environment: CAIRN_VAULT,
// CAIRN_SOCKET, CAIRN_CPUPROFILE (write a CPU profile of the process to
// that file), CAIRN_FUSE_DEBUG (non-empty: log every FUSE request of a
// mount to stderr) and CAIRN_NOW (an RFC 3339 time the command takes for
// now, for tests of retention against fixed histories).
package main
