package main

import (
	"github.com/urfave/cli/v2"
)

// newApp builds the command line; every command writes to env.
func newApp(env *cmdEnv) *cli.App {
	onUsage := func(c *cli.Context, err error, _ bool) error {
		return usagef("%v (see: cairn %s --help)", err, c.Command.Name)
	}
	app := &cli.App{
		Name:  "cairn",
		Usage: "back up disks into a deduplicated vault; restore, verify and mount any point",
		Description: "A POINT is written NAME@ID (ID is the point's UTC time, e.g. web01@20261121T100000Z);\n" +
			"a unique prefix of the ID and NAME@latest are accepted.",
		Writer:                 env.stdout,
		ErrWriter:              env.stderr,
		HideVersion:            true,
		UseShortOptionHandling: true,
		Suggest:                true,
		Flags:                  []cli.Flag{vaultFlag()},
		OnUsageError:           onUsage,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("unknown command %q (see: cairn --help)", c.Args().First())
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
			newDeleteCommand(env),
			newVerifyCommand(env),
			newStatsCommand(env),
			newMountCommand(env),
			newUmountCommand(env),
			newDaemonCommand(env),
		},
	}
	for _, c := range app.Commands {
		c.OnUsageError = onUsage
		c.Flags = append(c.Flags, vaultFlag())
	}
	return app
}

// args checks the number of positional arguments.
func args(c *cli.Context, minN, maxN int, usage string) error {
	n := c.NArg()
	if n < minN || (maxN >= 0 && n > maxN) {
		return usagef("usage: cairn %s %s", c.Command.Name, usage)
	}
	return nil
}
