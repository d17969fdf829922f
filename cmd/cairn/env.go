package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/snapshot"
)

// cmdEnv is everything a command may use from its surroundings: its
// streams, its terminal and its environment. Commands print through it
// alone, so their output is the same whether the work runs here or in
// the daemon that owns the vault.
type cmdEnv struct {
	stdout, stderr io.Writer
	terminal       bool // stderr is a terminal: show progress
	stdoutTerminal bool // stdout is a terminal: no images written to it
	width          int  // columns of the terminal on stderr; 0 = not a terminal
	stdoutWidth    int  // columns of the terminal on stdout; 0 = not a terminal
	getenv         func(string) string

	// Set from the global flags once the command line is parsed.
	quiet      bool // --quiet: results and errors only
	noProgress bool // --no-progress

	// jobLog, when set, gets the log lines of the job a command runs
	// (cairn run prints its hooks' output).
	jobLog io.Writer

	// loc is the user's time zone for printed times; nil = time.Local.
	loc *time.Location
}

const defaultVault = "/var/lib/cairn"

func vaultFlag() cli.Flag {
	return &cli.StringFlag{
		Name:  "vault",
		Usage: "vault directory (default: $CAIRN_VAULT, else " + defaultVault + ")",
	}
}

func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print machine-readable JSON"}
}

// path makes a user-given path absolute, against the working directory,
// so what is recorded and printed is the same whether or not a daemon
// opens it. "" and "-" (stdout) stay as they are.
func (e *cmdEnv) path(p string) string {
	if p == "" || p == "-" || filepath.IsAbs(p) {
		return p
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

// location is the time zone to print times in.
func (e *cmdEnv) location() *time.Location {
	if e.loc != nil {
		return e.loc
	}
	return time.Local
}

// summaryf prints a one-line summary of finished work for a person at a
// terminal; scripts and --quiet see nothing.
func (e *cmdEnv) summaryf(format string, args ...any) {
	if e.terminal && !e.quiet {
		fmt.Fprintf(e.stderr, format+"\n", args...)
	}
}

// withVault opens the vault named by --vault and runs fn with it.
func (e *cmdEnv) withVault(c *cli.Context, fn func(v *snapshot.Vault) error) error {
	dir := e.path(e.vaultDir(c))
	readOnly := slices.Contains(readOnlyCommands, c.Command.Name)
	o := snapshot.Options{Logf: e.warnf, ReadOnly: readOnly}
	if now := e.getenv("CAIRN_NOW"); now != "" {
		t, err := time.Parse(time.RFC3339, now)
		if err != nil {
			return usagef("CAIRN_NOW=%q: want an RFC 3339 time such as 2026-11-21T10:00:00Z", now)
		}
		o.Clock = func() time.Time { return t }
	}
	v, err := snapshot.Open(dir, o)
	if err != nil {
		return vaultOpenError(dir, err)
	}
	defer v.Close()
	return fn(v)
}

// readOnlyCommands only read the vault: they work on a vault whose
// filesystem is full or read-only.
var readOnlyCommands = []string{"points", "show", "ls", "cat", "restore", "export", "verify", "stats", "status"}

// vaultOpenError adds what to do to the errors a user can mend.
func vaultOpenError(dir string, err error) error {
	if errors.Is(err, os.ErrPermission) {
		hint := "run as root, or through the cairn daemon that owns it"
		var st syscall.Stat_t
		if syscall.Stat(dir, &st) == nil && int(st.Uid) != os.Geteuid() {
			owner := strconv.Itoa(int(st.Uid))
			if u, err := user.LookupId(owner); err == nil {
				owner = u.Username
			}
			hint = fmt.Sprintf("it belongs to %s: run as %s (e.g. with sudo), or through the cairn daemon that owns it", owner, owner)
		}
		return fmt.Errorf("%s: permission denied; %s", dir, hint)
	}
	if errors.Is(err, snapshot.ErrLocked) {
		// No daemon serves it (else the command would have gone there):
		// another command has it open.
		return fmt.Errorf("%w (another cairn command works on it: run this one when it ends, or run cairn daemon, through which commands take turns)", err)
	}
	return err
}

func (e *cmdEnv) warnf(format string, args ...any) {
	fmt.Fprintf(e.stderr, "cairn: warning: "+format+"\n", args...)
}

// usageError marks a wrong command line: exit code 2.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// oneLine flattens an error to a single line for the terminal.
func oneLine(err error) string {
	s := strings.TrimSpace(err.Error())
	s = strings.ReplaceAll(s, "\n", "; ")
	var pe *os.PathError
	if errors.As(err, &pe) && errors.Is(err, os.ErrNotExist) && !strings.Contains(s, "no such file") {
		s += " (no such file or directory)"
	}
	return s
}

// vaultDir returns --vault wherever on the command line it was given,
// before the command or after it; else $CAIRN_VAULT; else the default.
func (e *cmdEnv) vaultDir(c *cli.Context) string {
	for _, cc := range c.Lineage() {
		if cc.IsSet("vault") {
			return cc.String("vault")
		}
	}
	if v := e.getenv("CAIRN_VAULT"); v != "" {
		return v
	}
	return defaultVault
}
