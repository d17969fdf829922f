package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// forwardedCommands run inside a daemon that owns the vault, when one
// does. Others (init, mount, daemon, umount, help) always run here.
var forwardedCommands = []string{"backup", "points", "show", "restore", "delete", "verify", "stats", "ls", "cat", "export",
	"prune", "pin", "unpin", "gc", "vault", "policy", "run"}

var errNoDaemon = errors.New("no daemon")

const socketName = "cairn.sock"

// socketPath is where the daemon of vault dir listens.
func socketPath(getenv func(string) string, vault string) string {
	if s := getenv("CAIRN_SOCKET"); s != "" {
		return s
	}
	return filepath.Join(vault, socketName)
}

// commandOf finds the command name and the vault a command line names,
// without parsing flags of the command itself. named says the vault was
// named, by --vault or CAIRN_VAULT, rather than left to the default.
func commandOf(args []string, getenv func(string) string) (cmd, vault string, named, help bool) {
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--vault" || a == "-vault":
			if i+1 < len(args) {
				vault = args[i+1]
				i++
			}
		case strings.HasPrefix(a, "--vault=") || strings.HasPrefix(a, "-vault="):
			vault = a[strings.IndexByte(a, '=')+1:]
		case a == "-h" || a == "--help" || a == "help":
			help = true
		case cmd == "" && !strings.HasPrefix(a, "-"):
			cmd = a
		}
	}
	if vault == "" {
		vault = getenv("CAIRN_VAULT")
	}
	named = vault != ""
	if vault == "" {
		vault = defaultVault
	}
	return cmd, vault, named, help
}

// viaDaemon runs the command line in the daemon that owns the vault, if
// one listens. It returns errNoDaemon when none does (removing a socket
// left by a daemon that was killed). The request says which vault the
// command is for: a daemon found through CAIRN_SOCKET may serve another,
// and refuses a vault named explicitly that is not its own.
func viaDaemon(ctx context.Context, env *cmdEnv, args []string) (int, error) {
	cmd, vault, named, help := commandOf(args, env.getenv)
	if help || !slices.Contains(forwardedCommands, cmd) {
		return 0, errNoDaemon
	}
	cwd, err := os.Getwd()
	if err != nil {
		return 0, errNoDaemon
	}
	if !filepath.IsAbs(vault) {
		vault = filepath.Join(cwd, vault)
	}
	sock := socketPath(env.getenv, vault)
	conn, err := net.Dial("unix", sock)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		os.Remove(sock) // stale: its daemon died
		return 0, errNoDaemon
	case err != nil:
		return 0, errNoDaemon
	}
	defer conn.Close()
	req := daemonRequest{Args: args, Cwd: cwd, Terminal: env.terminal, StdoutTerminal: env.stdoutTerminal,
		Env: map[string]string{"CAIRN_VAULT": env.getenv("CAIRN_VAULT")}, Vault: vault, VaultNamed: named,
		Width: env.width, StdoutWidth: env.stdoutWidth, TZ: env.getenv("TZ")}
	b, _ := json.Marshal(req)
	if err := writeFrame(conn, frameRequest, b); err != nil {
		return 0, fmt.Errorf("talk to the daemon at %s: %w", sock, err)
	}
	stop := context.AfterFunc(ctx, func() { writeFrame(conn, frameCancel, nil) })
	defer stop()
	for {
		typ, payload, err := readFrame(conn)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return 0, fmt.Errorf("the daemon at %s closed the connection before the command finished", sock)
			}
			return 0, fmt.Errorf("talk to the daemon at %s: %w", sock, err)
		}
		switch typ {
		case frameStdout:
			env.stdout.Write(payload)
		case frameStderr:
			env.stderr.Write(payload)
		case frameExit:
			if len(payload) != 4 {
				return 0, fmt.Errorf("daemon protocol: bad exit frame")
			}
			return int(binary.BigEndian.Uint32(payload)), nil
		}
	}
}
