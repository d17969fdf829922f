package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/snapshot"
)

// cmdEnv is everything a command may use from its surroundings, so that
// commands run the same from a terminal and inside the daemon.
type cmdEnv struct {
	stdout, stderr io.Writer
	terminal       bool // stderr is a terminal: show progress
	stdoutTerminal bool // stdout is a terminal: no images written to it
	getenv         func(string) string
	cwd            string // resolve relative paths against this; "" = process cwd

	// vault, when set, is an already open vault (inside the daemon).
	vault *snapshot.Vault
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

// path resolves a user-given path against the command's working dir.
func (e *cmdEnv) path(p string) string {
	if p == "" || p == "-" || filepath.IsAbs(p) || e.cwd == "" {
		return p
	}
	return filepath.Join(e.cwd, p)
}

// withVault opens the vault named by --vault (or uses the daemon's) and
// runs fn with it.
func (e *cmdEnv) withVault(c *cli.Context, fn func(v *snapshot.Vault) error) error {
	if e.vault != nil {
		return fn(e.vault)
	}
	dir := e.path(e.vaultDir(c))
	v, err := snapshot.Open(dir, snapshot.Options{Logf: e.warnf})
	if err != nil {
		return err
	}
	defer v.Close()
	return fn(v)
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
