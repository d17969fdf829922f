package main

import (
	"context"
	"fmt"
	"net/http"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/snapshot"
)

func newVaultCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "vault",
		Usage: "show or change the vault's settings",
		Description: "Examples:\n" +
			"  cairn vault show\n" +
			"  cairn vault set --capacity 2T\n" +
			"  cairn vault set --capacity none",
		Subcommands: []*cli.Command{
			{
				Name:        "show",
				Usage:       "print the vault's settings and use",
				Description: "Examples:\n  cairn vault show\n  cairn vault show --json",
				ArgsUsage:   " ",
				Flags:       []cli.Flag{jsonFlag()},
				Action: func(c *cli.Context) error {
					if err := args(c, 0, 0, "[--json]"); err != nil {
						return err
					}
					vv, err := ask(env, c, http.MethodGet, "/vault", nil, nil, func(v *snapshot.Vault) (*vaultView, error) {
						return newVaultView(v), nil
					})
					if err != nil {
						return err
					}
					return renderVault(env, vv, c.Bool("json"))
				},
			},
			{
				Name:  "set",
				Usage: "change the vault's capacity",
				Description: "--capacity SIZE bounds the bytes the vault's packs may take: a backup that would pass it stops\n" +
					"with one line and commits nothing; restores, mounts, prune and gc go on. none removes the bound.\n\n" +
					"Examples:\n  cairn vault set --capacity 500G\n  cairn vault set --capacity none",
				ArgsUsage: " ",
				Flags:     []cli.Flag{&cli.StringFlag{Name: "capacity", Usage: "SIZE (e.g. 500G, 2T) or none"}},
				Action: func(c *cli.Context) error {
					if err := args(c, 0, 0, "--capacity SIZE|none"); err != nil {
						return err
					}
					if !c.IsSet("capacity") {
						return usagef("nothing to set: give --capacity SIZE or --capacity none")
					}
					capacity, err := parseCapacity(c.String("capacity"))
					if err != nil {
						return err
					}
					req := vaultSettings{Capacity: &capacity}
					vv, err := ask(env, c, http.MethodPut, "/vault", nil, req, func(v *snapshot.Vault) (*vaultView, error) {
						return setVault(c.Context, v, req)
					})
					if err != nil {
						return err
					}
					return renderVault(env, vv, false)
				},
			},
		},
	}
}

// parseCapacity reads SIZE or "none" (0).
func parseCapacity(s string) (int64, error) {
	if s == "none" || s == "0" {
		return 0, nil
	}
	n, err := parseSize(s)
	if err != nil || n <= 0 {
		return 0, usagef("--capacity %q: give a size such as 500G or 2T, or none", s)
	}
	return n, nil
}

// vaultView is what vault show --json prints and GET /v1/vault answers.
type vaultView struct {
	Dir         string `json:"dir"`
	Format      int    `json:"format"`
	ID          string `json:"id"`
	ChunkSize   int    `json:"chunk_size"`
	Compression string `json:"compression"`
	Capacity    int64  `json:"capacity,omitempty"`
	Used        int64  `json:"used"`
}

func newVaultView(v *snapshot.Vault) *vaultView {
	cfg := v.Config()
	return &vaultView{Dir: v.Dir(), Format: cfg.Format, ID: cfg.ID, ChunkSize: cfg.BlockSize, Compression: cfg.Compression,
		Capacity: cfg.Capacity, Used: v.Used()}
}

// vaultSettings is the body of PUT /v1/vault: the settings to change,
// the others left out.
type vaultSettings struct {
	Capacity *int64 `json:"capacity,omitempty"` // bytes; 0: none
}

func setVault(ctx context.Context, v *snapshot.Vault, s vaultSettings) (*vaultView, error) {
	if s.Capacity == nil {
		return nil, usagef("nothing to set: give --capacity SIZE or --capacity none")
	}
	if *s.Capacity < 0 {
		return nil, usagef("capacity %d: give a size in bytes, or 0 for none", *s.Capacity)
	}
	if err := v.SetCapacity(ctx, *s.Capacity); err != nil {
		return nil, err
	}
	return newVaultView(v), nil
}

func renderVault(env *cmdEnv, vv *vaultView, asJSON bool) error {
	if asJSON {
		return writeJSON(env.stdout, vv)
	}
	w := env.stdout
	fmt.Fprintf(w, "vault:        %s (format %d, id %s)\n", vv.Dir, vv.Format, vv.ID)
	fmt.Fprintf(w, "chunk size:   %s, compression %s\n", bytesIEC(int64(vv.ChunkSize)), vv.Compression)
	fmt.Fprintf(w, "capacity:     %s\n", capacityLine(vv.Used, vv.Capacity))
	return nil
}

// capacityLine says how much of the vault's capacity is used.
func capacityLine(used, capacity int64) string {
	if capacity <= 0 {
		return fmt.Sprintf("%s used, no capacity set", bytesIEC(used))
	}
	return fmt.Sprintf("%s used of %s (%.0f%%)", bytesIEC(used), bytesIEC(capacity), 100*float64(used)/float64(capacity))
}
