package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/snapshot"
)

func newStatsCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "stats",
		Usage: "show how much the vault protects and stores",
		Description: "Bytes protected and stored, dedup and compression ratios, the capacity used, the bytes gc\n" +
			"would free now, and those it cannot free yet because a file of a deleted point is open in the\n" +
			"mount.\n\n" +
			"Examples:\n" +
			"  cairn stats\n" +
			"  cairn stats --json",
		ArgsUsage: " ",
		Flags:     []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			if err := args(c, 0, 0, "[--json]"); err != nil {
				return err
			}
			st, err := ask(env, c, http.MethodGet, "/stats", nil, nil, func(v *snapshot.Vault) (*statsView, error) {
				return vaultStats(c.Context, v)
			})
			if err != nil {
				return err
			}
			return renderStats(env, st, c.Bool("json"))
		},
	}
}

// statsView is what stats --json prints and GET /v1/stats answers.
type statsView struct {
	*snapshot.Stats
	ChunkSize   int    `json:"chunk_size"`
	Compression string `json:"compression"`
	Used        int64  `json:"used"`
	Capacity    int64  `json:"capacity,omitempty"`
	Reclaimable *int64 `json:"reclaimable,omitempty"` // bytes gc would free now (absent while a gc runs)
	Held        *int64 `json:"held_by_readers,omitempty"`
}

func vaultStats(ctx context.Context, v *snapshot.Vault) (*statsView, error) {
	s, err := v.Stats()
	if err != nil {
		return nil, err
	}
	cfg := v.Config()
	free, held, err := v.Reclaimable(ctx)
	if err != nil && !errors.Is(err, snapshot.ErrGCRunning) {
		return nil, err
	}
	out := &statsView{Stats: s, ChunkSize: cfg.BlockSize, Compression: cfg.Compression, Used: v.Used(), Capacity: cfg.Capacity}
	if err == nil {
		out.Reclaimable, out.Held = &free, &held
	}
	return out, nil
}

func renderStats(env *cmdEnv, st *statsView, asJSON bool) error {
	if asJSON {
		return writeJSON(env.stdout, st)
	}
	s := st.Stats
	if s == nil {
		s = &snapshot.Stats{}
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
	fmt.Fprintf(w, "chunk size:         %s, compression %s\n", bytesIEC(int64(st.ChunkSize)), st.Compression)
	fmt.Fprintf(w, "capacity:           %s\n", capacityLine(st.Used, st.Capacity))
	if st.Reclaimable == nil {
		fmt.Fprintln(w, "reclaimable:        (a gc is running)")
	} else {
		fmt.Fprintf(w, "reclaimable:        %s (cairn gc frees it now)\n", bytesIEC(*st.Reclaimable))
		if st.Held != nil && *st.Held > 0 {
			fmt.Fprintf(w, "held by readers:    %s (deleted points with files open in the mount; freed once closed)\n", bytesIEC(*st.Held))
		}
	}
	return nil
}
