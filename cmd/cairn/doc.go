// Command cairn backs up disks into a deduplicated vault whose every
// point can be restored, verified, exported and mounted.
//
// Layout: one file per command (cmd_*.go), each with newXCommand
// building flags and runX doing the work against a *snapshot.Vault.
// cmdEnv carries everything a command may take from its surroundings
// (streams, terminal, environment, working directory, an open vault), so
// the same code runs from a terminal and inside a daemon.
//
// Processes: a long-running cairn (daemon, mount) owns the vault and
// serves the other commands on VAULT/cairn.sock (proto.go, daemon.go);
// every other command first tries that socket (client.go) and otherwise
// opens the vault itself.
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
