package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"
)

// version is set at build time (make build: git describe); a plain go
// build falls back to the VCS revision Go records.
var version = ""

func versionString() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	switch {
	case rev == "":
		return "dev"
	case dirty:
		return "dev-" + rev + "-dirty"
	}
	return "dev-" + rev
}

func init() {
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print cairn's version and exit"}
	cli.VersionPrinter = func(c *cli.Context) { fmt.Fprintf(c.App.Writer, "cairn %s\n", c.App.Version) }
}

// newApp builds the command line; every command writes to env.
func newApp(env *cmdEnv) *cli.App {
	app := &cli.App{
		Name:  "cairn",
		Usage: "back up disks into a deduplicated vault; restore, verify and mount any point",
		Description: "A POINT is written NAME@ID (ID is the point's UTC time, e.g. web01@20261121T100000Z);\n" +
			"a unique prefix of the ID and NAME@latest are accepted.\n\n" +
			"Exit codes: 0 success, 1 failure, 2 wrong command line, 130 interrupted (Ctrl-C, SIGTERM).\n" +
			"Errors are one line on stderr starting with \"cairn: \"; with --json, a JSON object\n" +
			"{\"error\": ..., \"exit_code\": ...} instead.\n\n" +
			"Examples:\n" +
			"  cairn --vault /srv/vault init\n" +
			"  cairn backup --name web01 /var/lib/libvirt/images/web01.img\n" +
			"  cairn points\n" +
			"  cairn restore web01@latest /tmp/web01.img",
		Version:                versionString(),
		Writer:                 env.stdout,
		ErrWriter:              env.stderr,
		UseShortOptionHandling: true,
		Suggest:                true,
		Flags:                  globalFlags(),
		OnUsageError:           onUsage,
		Before:                 env.readGlobalFlags,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				typed := c.Args().First()
				if s := suggestCommand(c.App, typed); s != "" {
					return usagef("unknown command %q; did you mean %q? (see: cairn --help)", typed, s)
				}
				return usagef("unknown command %q (see: cairn --help)", typed)
			}
			return cli.ShowAppHelp(c)
		},
		ExitErrHandler: func(*cli.Context, error) {}, // run() reports errors
		Commands: []*cli.Command{
			newInitCommand(env),
			newBackupCommand(env),
			newPointsCommand(env),
			newShowCommand(env),
			newLsCommand(env),
			newCatCommand(env),
			newRestoreCommand(env),
			newExportCommand(env),
			newNBDCommand(env),
			newDeleteCommand(env),
			newPruneCommand(env),
			newPinCommand(env, true),
			newPinCommand(env, false),
			newGCCommand(env),
			newVerifyCommand(env),
			newRepairCommand(env),
			newStatsCommand(env),
			newVaultCommand(env),
			newPolicyCommand(env),
			newRunCommand(env),
			newStatusCommand(env),
			newMountCommand(env),
			newUmountCommand(env),
			newDaemonCommand(env),
			newJobsCommand(env),
			newJobCommand(env),
			newCancelCommand(env),
			newDocsCommand(env),
		},
	}
	env.prepareCommands(app.Commands)
	return app
}

// onUsage turns a command-line error into one line that names the help
// to read.
func onUsage(c *cli.Context, err error, _ bool) error {
	if c.Command == nil || c.Command.Name == "" || c.Command.Name == c.App.Name {
		return usagef("%v (see: cairn --help)", err)
	}
	return usagef("%v (see: cairn %s --help)", err, commandPath(c))
}

// commandPath names the command c runs with its parents: "policy set".
func commandPath(c *cli.Context) string {
	var names []string
	for _, cc := range c.Lineage() {
		if cc.Command != nil && cc.Command.Name != "" && cc.Command.Name != c.App.Name {
			names = append([]string{cc.Command.Name}, names...)
		}
	}
	return strings.Join(names, " ")
}

// prepareCommands gives every command and subcommand the global flags,
// the usage-error handler and the global-flag reader.
func (e *cmdEnv) prepareCommands(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = onUsage
		c.Flags = append(c.Flags, globalFlags()...)
		c.Before = e.readGlobalFlags
		if len(c.Subcommands) > 0 && c.Action == nil {
			c.Action = subcommandMissing
		}
		e.prepareCommands(c.Subcommands)
	}
}

// subcommandMissing is the action of a command made of subcommands
// (policy, vault) when none, or an unknown one, is named.
func subcommandMissing(c *cli.Context) error {
	if c.NArg() == 0 {
		return cli.ShowSubcommandHelp(c)
	}
	typed, path := c.Args().First(), commandPath(c)
	best, bestD := "", 3
	for _, sc := range c.Command.Subcommands {
		for _, n := range sc.Names() {
			if d := editDistance(strings.ToLower(typed), n); n != "h" && d <= 2 && d < bestD {
				best, bestD = n, d
			}
		}
	}
	if best != "" {
		return usagef("unknown command %q for cairn %s; did you mean %q? (see: cairn %s --help)", typed, path, best, path)
	}
	return usagef("unknown command %q for cairn %s (see: cairn %s --help)", typed, path, path)
}

// globalFlags are accepted before or after the command name.
func globalFlags() []cli.Flag {
	return []cli.Flag{
		vaultFlag(),
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only results and errors: no progress, no summaries"},
		&cli.BoolFlag{Name: "no-progress", Usage: "show no progress bars"},
	}
}

// readGlobalFlags notes --quiet and --no-progress wherever on the
// command line they were given.
func (e *cmdEnv) readGlobalFlags(c *cli.Context) error {
	for _, cc := range c.Lineage() {
		if cc.Bool("quiet") {
			e.quiet = true
		}
		if cc.Bool("no-progress") {
			e.noProgress = true
		}
	}
	return nil
}

// suggestCommand returns the command name closest to typed, when one is
// close enough to be a typo: one or two edits (a swap of neighbours
// counts as one), fewer for short names.
func suggestCommand(app *cli.App, typed string) string {
	best, bestD := "", 3
	if len(typed) < 3 {
		return ""
	}
	for _, c := range app.Commands {
		for _, n := range c.Names() {
			if n == "h" {
				continue
			}
			limit := 2
			if len(n) <= 4 {
				limit = 1
			}
			if d := editDistance(strings.ToLower(typed), n); d <= limit && d < bestD {
				best, bestD = n, d
			}
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and swaps of adjacent characters.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// args checks the number of positional arguments.
func args(c *cli.Context, minN, maxN int, usage string) error {
	n := c.NArg()
	if n < minN || (maxN >= 0 && n > maxN) {
		return usagef("usage: cairn %s %s", commandPath(c), usage)
	}
	return nil
}
