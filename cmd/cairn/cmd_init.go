package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/snapshot"
)

type initOptions struct {
	vault       string
	chunkSize   int64
	compression string
	capacity    int64
	json        bool
}

func newInitCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "create a new vault",
		Description: "Makes the vault directory (--vault, else $CAIRN_VAULT, else " + defaultVault + "), mode 0700.\n" +
			"The chunk size is the unit of dedup: smaller finds more duplicates and costs a larger index\n" +
			"(BENCHMARKS.md compares them). It cannot be changed later.\n\n" +
			"Examples:\n" +
			"  cairn --vault /srv/vault init\n" +
			"  cairn init --chunk-size 64K --compression lz4\n" +
			"  cairn init --capacity 2T",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "chunk-size", Value: "256K", Usage: "block size, a power of two from 4K to 4M"},
			&cli.StringFlag{Name: "compression", Value: snapshot.DefaultCompression, Usage: "zstd, lz4 or none"},
			&cli.StringFlag{Name: "capacity", Usage: "bound the bytes the vault's packs may take, e.g. 2T (default: none)"},
			jsonFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := args(c, 0, 0, "[--chunk-size SIZE] [--compression zstd|lz4|none]"); err != nil {
				return err
			}
			size, err := parseSize(c.String("chunk-size"))
			if err != nil {
				return usagef("--chunk-size: %v", err)
			}
			var capacity int64
			if s := c.String("capacity"); s != "" {
				if capacity, err = parseCapacity(s); err != nil {
					return err
				}
			}
			return runInit(env, initOptions{vault: env.path(env.vaultDir(c)), chunkSize: size,
				compression: c.String("compression"), capacity: capacity, json: c.Bool("json")})
		},
	}
}

func runInit(env *cmdEnv, o initOptions) error {
	cfg := snapshot.Config{BlockSize: int(o.chunkSize), Compression: o.compression, Capacity: o.capacity}
	if err := snapshot.Init(o.vault, cfg, time.Now()); errors.Is(err, snapshot.ErrBadSetting) {
		return usageError{err}
	} else if err != nil {
		return err
	}
	if o.json {
		return writeJSON(env.stdout, map[string]any{"vault": o.vault, "chunk_size": o.chunkSize, "compression": o.compression})
	}
	fmt.Fprintf(env.stdout, "initialized vault %s (chunk size %s, compression %s)\n", o.vault, bytesIEC(o.chunkSize), o.compression)
	return nil
}
