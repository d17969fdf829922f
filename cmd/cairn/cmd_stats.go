package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/snapshot"
)

func newStatsCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "stats",
		Usage: "show how much the vault protects and stores",
		Description: "Examples:\n" +
			"  cairn stats\n" +
			"  cairn stats --json",
		ArgsUsage: " ",
		Flags:     []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			if err := args(c, 0, 0, "[--json]"); err != nil {
				return err
			}
			return env.withVault(c, func(v *snapshot.Vault) error { return runStats(env, v, c.Bool("json")) })
		},
	}
}

func runStats(env *cmdEnv, v *snapshot.Vault, asJSON bool) error {
	s, err := v.Stats()
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(env.stdout, struct {
			*snapshot.Stats
			ChunkSize   int    `json:"chunk_size"`
			Compression string `json:"compression"`
		}{s, v.Config().BlockSize, v.Config().Compression})
	}
	w := env.stdout
	fmt.Fprintf(w, "resources:          %d\n", s.Resources)
	fmt.Fprintf(w, "points:             %d\n", s.Points)
	fmt.Fprintf(w, "bytes protected:    %s (disk sizes of all points)\n", bytesIEC(s.Protected))
	fmt.Fprintf(w, "bytes allocated:    %s (non-zero data of all points)\n", bytesIEC(s.Allocated))
	fmt.Fprintf(w, "bytes unique:       %s (distinct blocks, uncompressed)\n", bytesIEC(s.Unique))
	fmt.Fprintf(w, "bytes stored:       %s (%d packs)\n", bytesIEC(s.Stored), s.Packs)
	fmt.Fprintf(w, "blocks:             %d\n", s.Blocks)
	fmt.Fprintf(w, "dedup ratio:        %.2fx\n", s.DedupRatio)
	fmt.Fprintf(w, "compression ratio:  %.2fx\n", s.CompressionRatio)
	fmt.Fprintf(w, "chunk size:         %s, compression %s\n", bytesIEC(int64(v.Config().BlockSize)), v.Config().Compression)
	return nil
}
