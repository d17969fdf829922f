package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func newDocsCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "docs",
		Usage: "print cairn's manual: every command's help, as a man page or markdown",
		Description: "make install writes the man page (cairn(1)) from it.\n\n" +
			"Examples:\n" +
			"  cairn docs --man | man -l -\n" +
			"  cairn docs --markdown > cairn.md",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "man", Usage: "a man page (troff), section 1"},
			&cli.BoolFlag{Name: "markdown", Usage: "markdown"},
		},
		Action: func(c *cli.Context) error {
			if err := args(c, 0, 0, "--man | --markdown"); err != nil {
				return err
			}
			var (
				out string
				err error
			)
			switch {
			case c.Bool("man") == c.Bool("markdown"):
				return usagef("give one of --man or --markdown")
			case c.Bool("man"):
				out, err = c.App.ToManWithSection(1)
			default:
				out, err = c.App.ToMarkdown()
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(env.stdout, out)
			return err
		},
	}
}
