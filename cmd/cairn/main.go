package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := &cmdEnv{
		stdout:         os.Stdout,
		stderr:         os.Stderr,
		terminal:       term.IsTerminal(int(os.Stderr.Fd())),
		stdoutTerminal: term.IsTerminal(int(os.Stdout.Fd())),
		getenv:         os.Getenv,
	}
	if path := os.Getenv("CAIRN_CPUPROFILE"); path != "" {
		atExit = append(atExit, startProfile(path))
	}
	code, err := viaDaemon(ctx, env, os.Args)
	if errors.Is(err, errNoDaemon) {
		code = run(ctx, env, os.Args)
	} else if err != nil {
		fmt.Fprintf(env.stderr, "cairn: %s\n", oneLine(err))
		code = 1
	}
	stop()
	exit(code)
}

// run executes one command line and returns the process exit code.
func run(ctx context.Context, env *cmdEnv, args []string) int {
	app := newApp(env)
	err := app.RunContext(ctx, interleaveFlags(app, args))
	if err == nil {
		return 0
	}
	var ue usageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(env.stderr, "cairn: %s\n", oneLine(err))
		return 2
	case errors.Is(err, context.Canceled):
		// Ctrl-C or SIGTERM: what was cut short is not an error to
		// explain ("context canceled" deep in some step).
		fmt.Fprintln(env.stderr, "cairn: interrupted")
		return 130
	}
	fmt.Fprintf(env.stderr, "cairn: %s\n", oneLine(err))
	return 1
}
