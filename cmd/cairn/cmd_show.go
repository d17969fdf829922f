package main

import (
	"fmt"
	"net/http"

	"github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/snapshot"
)

func newShowCommand(env *cmdEnv) *cli.Command {
	return &cli.Command{
		Name:  "show",
		Usage: "show one point and its disks",
		Description: "Shows the point's times (local and UTC), type, sizes, how its disks differ from the point\n" +
			"before, and for each disk its partition table and filesystems.\n\n" +
			"Examples:\n" +
			"  cairn show web01@latest\n" +
			"  cairn show web01@20261121T10 --json",
		ArgsUsage: "POINT",
		Flags:     []cli.Flag{jsonFlag()},
		Action: func(c *cli.Context) error {
			if err := args(c, 1, 1, "POINT [--json]"); err != nil {
				return err
			}
			ref := c.Args().First()
			sv, err := ask(env, c, http.MethodGet, pathOf("points", ref), nil, nil, func(v *snapshot.Vault) (*showView, error) {
				return showPoint(v, ref)
			})
			if err != nil {
				return err
			}
			return renderShow(env, sv, c.Bool("json"))
		},
	}
}

// showPoint is one point in detail: GET /v1/points/{point}.
func showPoint(v *snapshot.Vault, ref string) (*showView, error) {
	p, err := v.Resolve(ref)
	if err != nil {
		return nil, err
	}
	view, err := newPointViewIn(v, p)
	if err != nil {
		return nil, err
	}
	sv := &showView{pointView: view}
	for _, d := range view.Disks {
		sv.Disks = append(sv.Disks, newShowDiskView(v, p, d))
	}
	return sv, nil
}

func renderShow(env *cmdEnv, sv *showView, asJSON bool) error {
	if asJSON {
		return writeJSON(env.stdout, sv)
	}
	view := sv.pointView
	w := env.stdout
	fmt.Fprintf(w, "point:      %s\n", view.Point)
	local := view.Time.In(env.location()).Format("2006-01-02 15:04:05 MST")
	if utc := view.Time.UTC().Format("2006-01-02 15:04:05 UTC"); utc != local {
		local += " (" + utc + ")"
	}
	fmt.Fprintf(w, "time:       %s\n", local)
	fmt.Fprintf(w, "type:       %s\n", view.Type)
	if view.Trigger != "" {
		fmt.Fprintf(w, "made by:    %s\n", view.Trigger)
	}
	switch view.Consistency {
	case snapshot.ConsistencyApplication:
		fmt.Fprintln(w, "consistent: application (its freeze hook ran and succeeded)")
	case snapshot.ConsistencyCrash:
		fmt.Fprintln(w, "consistent: crash (the disks as they were read, as after a power cut)")
	}
	if view.Pinned {
		fmt.Fprintln(w, "pinned:     yes, kept whatever retention rules say (cairn unpin to release)")
	}
	if view.Parent != "" {
		fmt.Fprintf(w, "compared:   %s (this point does not depend on it)\n", view.Parent)
	}
	if c := view.DiskChanges; !c.None() {
		fmt.Fprintf(w, "disks:      %s\n", c)
	}
	if d := view.Damaged; d != nil {
		fmt.Fprintf(w, "DAMAGED:    %s; the rest still restores and mounts (restore --skip-damaged)\n", damageSummary(d))
		for _, dd := range d.Disks {
			fmt.Fprintf(w, "            disk %s: %s\n", dd.Disk, rangeList(dd.Ranges, 8))
		}
	}
	fmt.Fprintf(w, "size:       %s (%d bytes)\n", bytesIEC(view.Size), view.Size)
	fmt.Fprintf(w, "allocated:  %s\n", bytesIEC(view.Allocated))
	fmt.Fprintf(w, "changed:    %s\n", bytesIEC(view.Changed))
	fmt.Fprintf(w, "added:      %s to the vault\n", bytesIEC(view.Added))
	fmt.Fprintf(w, "took:       %s\n\n", shortDuration(secondsDuration(view.Seconds)))
	t := newTable(2, 3, 4, 5)
	t.row("DISK", "TYPE", "SIZE", "ALLOCATED", "CHANGED", "ADDED", "SOURCE")
	for _, d := range sv.Disks {
		typ := d.Type
		if d.Base != "" && d.Base != d.Name {
			typ += " (was " + d.Base + ")"
		}
		t.row(d.Name, typ, bytesIEC(d.Size), bytesIEC(d.Allocated), bytesIEC(d.Changed), bytesIEC(d.Added), d.Source)
	}
	if err := t.write(w); err != nil {
		return err
	}
	for _, d := range sv.Disks {
		fmt.Fprintf(w, "\n%s: %s\n", d.Name, d.Content)
		if d.TableError != "" {
			fmt.Fprintf(w, "  partition table damaged: %s\n", d.TableError)
		}
		if len(d.Partitions) > 0 {
			if err := printPartitions(w, d.Partitions, "  "); err != nil {
				return err
			}
		}
	}
	return nil
}

// showView is a point with what its disks hold.
type showView struct {
	pointView
	Disks []showDiskView `json:"disks"` // shadows pointView.Disks
}

type showDiskView struct {
	diskView
	Table      string          `json:"partition_table,omitempty"` // gpt or mbr
	TableError string          `json:"partition_table_error,omitempty"`
	Filesystem string          `json:"filesystem,omitempty"` // of a bare filesystem disk
	Content    string          `json:"content"`
	Partitions []partitionView `json:"partitions"`
}

// newShowDiskView reads a disk's partition table and probes each
// partition; an unreadable disk is reported in Content, not as an error.
func newShowDiskView(v *snapshot.Vault, p *snapshot.Point, dv diskView) showDiskView {
	sd := showDiskView{diskView: dv, Partitions: []partitionView{}}
	_, d, err := openVolumes(v, p, dv.Name)
	if err != nil {
		sd.Content = "unreadable: " + err.Error()
		return sd
	}
	sd.Table, sd.Content = d.Table.Kind, diskContent(d)
	if d.TableErr != nil {
		sd.TableError = d.TableErr.Error()
	}
	if d.Bare {
		sd.Filesystem = d.Volumes[0].Type()
	}
	sd.Partitions = newPartitionViews(d)
	return sd
}
