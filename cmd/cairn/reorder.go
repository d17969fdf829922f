package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// interleaveFlags lets flags follow positional arguments, as in
// "cairn restore POINT --disk vdb TARGET": urfave/cli stops parsing flags
// at the first positional argument, so the command's flags (with their
// values) are moved in front of its positional arguments. Everything
// after "--" stays as it is.
func interleaveFlags(app *cli.App, args []string) []string {
	ci := -1
	var cmd *cli.Command
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return args
		}
		if strings.HasPrefix(a, "-") {
			if takesValue(app.Flags, a) && !strings.Contains(a, "=") {
				i++
			}
			continue
		}
		if cmd = app.Command(a); cmd != nil {
			ci = i
		}
		break
	}
	if cmd == nil {
		return args
	}
	// A command with subcommands (vault set): the subcommand's flags are
	// the ones to move, in front of its own positional arguments.
	for len(cmd.Subcommands) > 0 && ci+1 < len(args) {
		sub := cmd.Command(args[ci+1])
		if sub == nil {
			break
		}
		cmd, ci = sub, ci+1
	}
	var flags, pos []string
	rest := args[ci+1:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		switch {
		case a == "--":
			pos = append(pos, rest[i:]...)
			i = len(rest)
		case strings.HasPrefix(a, "-") && a != "-":
			flags = append(flags, a)
			if takesValue(cmd.Flags, a) && !strings.Contains(a, "=") && i+1 < len(rest) {
				flags = append(flags, rest[i+1])
				i++
			}
		default:
			pos = append(pos, a)
		}
	}
	out := append([]string{}, args[:ci+1]...)
	out = append(out, flags...)
	return append(out, pos...)
}

// takesValue reports whether the flag written as arg needs a value.
func takesValue(flags []cli.Flag, arg string) bool {
	name := strings.TrimLeft(arg, "-")
	name, _, _ = strings.Cut(name, "=")
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				_, isBool := f.(*cli.BoolFlag)
				return !isBool
			}
		}
	}
	return false
}
