package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"golang.org/x/term"
)

func main() {
	// Every file a vault holds is the owner's alone, whatever the
	// user's umask: Badger creates its files with 0666 less the umask.
	// Outputs (restore, export) are made 0600 explicitly too.
	syscall.Umask(0o077)
	closeInheritedOnExec()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := &cmdEnv{
		stdout:         os.Stdout,
		stderr:         os.Stderr,
		terminal:       term.IsTerminal(int(os.Stderr.Fd())),
		stdoutTerminal: term.IsTerminal(int(os.Stdout.Fd())),
		width:          termWidth(os.Stderr),
		stdoutWidth:    termWidth(os.Stdout),
		getenv:         os.Getenv,
	}
	if path := os.Getenv("CAIRN_CPUPROFILE"); path != "" {
		atExit = append(atExit, startProfile(path))
	}
	code := run(ctx, env, os.Args)
	stop()
	exit(code)
}

// closeInheritedOnExec marks every descriptor the process inherited
// beyond stdin, stdout and stderr close-on-exec, so that the hooks the
// daemon (or cairn run) starts get none of them, whatever the program
// that started cairn left open. cairn itself may still use them
// (a source named /dev/fd/N). Its own files are close-on-exec already.
func closeInheritedOnExec() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}

// run executes one command line and returns the process exit code. A
// command that works on a vault a daemon owns has the daemon do the
// work (dispatch.go), with the same output and exit code.
func run(ctx context.Context, env *cmdEnv, args []string) int {
	app := newApp(env)
	err := app.RunContext(ctx, interleaveFlags(app, args))
	if err == nil {
		return 0
	}
	code, msg := exitCode(err)
	reportError(env, args, code, msg)
	return code
}

// exitCode is the exit code and the one line of a command's error: 2 for
// a wrong command line (or request), 130 when interrupted, 1 otherwise.
func exitCode(err error) (int, string) {
	var re *remoteError
	var ue usageError
	switch {
	case errors.As(err, &re):
		return re.code, re.msg
	case errors.As(err, &ue):
		return 2, oneLine(err)
	case errors.Is(err, context.Canceled):
		// Ctrl-C or SIGTERM: what was cut short is not an error to
		// explain ("context canceled" deep in some step).
		return 130, "interrupted"
	}
	return 1, oneLine(err)
}

// reportError prints a failed command's error: one "cairn: " line, or
// under --json one JSON object, so scripts parse failures too.
func reportError(env *cmdEnv, args []string, code int, msg string) {
	if !wantsJSON(args) {
		fmt.Fprintf(env.stderr, "cairn: %s\n", msg)
		return
	}
	b, _ := json.Marshal(struct {
		Error    string `json:"error"`
		ExitCode int    `json:"exit_code"`
	}{msg, code})
	fmt.Fprintf(env.stderr, "%s\n", b)
}

// wantsJSON reports whether the command line asks for --json, before
// any "--".
func wantsJSON(args []string) bool {
	for _, a := range args[min(1, len(args)):] {
		switch a {
		case "--":
			return false
		case "--json", "-json", "--json=true", "-json=true":
			return true
		}
	}
	return false
}

// termWidth is the number of columns of the terminal f is, or 0.
func termWidth(f *os.File) int {
	w, _, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0
	}
	return w
}
