package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// table is a TSV file with a header line: rows of named numeric or text
// fields.
type table struct {
	cols []string
	rows []map[string]string
}

func readTable(path string) (*table, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t := &table{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		if t.cols == nil {
			t.cols = fields
			continue
		}
		if len(fields) != len(t.cols) {
			return nil, fmt.Errorf("%s: row %q has %d fields, header %d", path, sc.Text(), len(fields), len(t.cols))
		}
		row := map[string]string{}
		for i, c := range t.cols {
			row[c] = fields[i]
		}
		t.rows = append(t.rows, row)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if t.cols == nil {
		return nil, fmt.Errorf("%s: empty", path)
	}
	return t, nil
}

// median of column col over the rows that match every key=value of sel;
// NaN when none does.
func (t *table) median(col string, sel map[string]string) float64 {
	var xs []float64
	for _, r := range t.rows {
		ok := true
		for k, v := range sel {
			ok = ok && r[k] == v
		}
		if !ok {
			continue
		}
		if x, err := strconv.ParseFloat(r[col], 64); err == nil {
			xs = append(xs, x)
		}
	}
	return median(xs)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	slices.Sort(xs)
	m := len(xs) / 2
	if len(xs)%2 == 1 {
		return xs[m]
	}
	return (xs[m-1] + xs[m]) / 2
}

// min of column col over the matching rows; NaN when none does.
func (t *table) min(col string, sel map[string]string) float64 {
	m := math.NaN()
	for _, r := range t.rows {
		ok := true
		for k, v := range sel {
			ok = ok && r[k] == v
		}
		if x, err := strconv.ParseFloat(r[col], 64); ok && err == nil && (math.IsNaN(m) || x < m) {
			m = x
		}
	}
	return m
}

func (t *table) count(sel map[string]string) int {
	n := 0
	for _, r := range t.rows {
		ok := true
		for k, v := range sel {
			ok = ok && r[k] == v
		}
		if ok {
			n++
		}
	}
	return n
}

const mib = 1 << 20

// runReport prints the comparison table of bench/run.sh from its results
// file (columns tool, round, step, wall, cpu, rss_kb, repo_bytes, added)
// and checks the targets.
func runReport(args []string) error {
	fl := flag.NewFlagSet("report", flag.ContinueOnError)
	changed := fl.Int64("changed4k", 0, "bytes in 4 KiB blocks that really changed between the two disks")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() != 1 {
		return errors.New("usage: report [-changed4k N] RESULTS.tsv")
	}
	t, err := readTable(fl.Arg(0))
	if err != nil {
		return err
	}
	// Tools in the run, cairn first; a partial run (BENCH_TOOLS) gets a
	// partial table and no verdicts it cannot make.
	var tools []string
	for _, tool := range []string{"cairn", "restic", "borg-lz4", "borg-zstd3"} {
		if t.count(map[string]string{"tool": tool}) > 0 {
			tools = append(tools, tool)
		}
	}
	if len(tools) == 0 || tools[0] != "cairn" {
		return errors.New("no cairn rows")
	}
	med := func(tool, step, col string) float64 {
		return t.median(col, map[string]string{"tool": tool, "step": step})
	}
	fmt.Printf("| tool | step | runs | wall s | min wall s | CPU s | peak RSS MiB | repo MiB | others' CPU s | wall ratio | CPU ratio | repo ratio |\n")
	fmt.Printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, step := range []string{"full", "incremental"} {
		cw, cc, cr := med("cairn", step, "wall"), med("cairn", step, "cpu"), med("cairn", step, "repo_bytes")
		for _, tool := range tools {
			w, c, r := med(tool, step, "wall"), med(tool, step, "cpu"), med(tool, step, "repo_bytes")
			ratios := "| – | – | –"
			if tool != "cairn" {
				ratios = fmt.Sprintf("| %.2f× | %.2f× | %.2f×", w/cw, c/cc, r/cr)
			}
			sel := map[string]string{"tool": tool, "step": step}
			fmt.Printf("| %s | %s | %d | %.2f | %.2f | %.2f | %.0f | %.1f | %.1f %s |\n", tool, step,
				t.count(sel), w, t.min("wall", sel), c, med(tool, step, "rss_kb")/1024, r/mib, med(tool, step, "other_cpu"), ratios)
		}
	}
	fmt.Println()
	fmt.Println("Medians over the runs; ratios are peer / cairn medians (above 1: cairn is faster, leaner or smaller).")
	fmt.Println("Repo MiB is `du -sb` after the step. Others' CPU s is the CPU time the rest of the machine used during the step.")
	fmt.Println()

	fastest := func(step string) (string, float64) {
		best, bw := "", math.Inf(1)
		for _, tool := range tools[1:] {
			if w := med(tool, step, "wall"); w < bw {
				best, bw = tool, w
			}
		}
		return best, bw
	}
	verdict := func(ok bool) string {
		if len(tools) < 2 {
			return "n/a"
		}
		if ok {
			return "PASS"
		}
		return "MISS"
	}
	for _, g := range []struct {
		step string
		want float64
	}{{"full", 1.5}, {"incremental", 3}} {
		if len(tools) < 2 {
			fmt.Printf("- n/a %s backup speed: no peer ran\n", g.step)
			continue
		}
		peer, pw := fastest(g.step)
		x := pw / med("cairn", g.step, "wall")
		fmt.Printf("- %s %s backup: %.2f× faster than the fastest peer (%s); target ≥ %.1f×", verdict(x >= g.want), g.step, x, peer, g.want)
		best := math.Inf(1)
		for _, tool := range tools[1:] {
			best = math.Min(best, t.min("wall", map[string]string{"tool": tool, "step": g.step}))
		}
		fmt.Printf(" (best runs: %.2f×)\n", best/t.min("wall", map[string]string{"tool": "cairn", "step": g.step}))
	}
	cv := med("cairn", "incremental", "repo_bytes")
	small, sv := "", math.Inf(1)
	for _, tool := range []string{"restic", "borg-lz4"} {
		if r := med(tool, "incremental", "repo_bytes"); !math.IsNaN(r) && r < sv {
			small, sv = tool, r
		}
	}
	if math.IsInf(sv, 1) {
		fmt.Println("- n/a vault size: no restic or borg-lz4 run to compare with")
	} else {
		fmt.Printf("- %s vault after both backups: %.2f× the smaller default peer repository (%s, %.1f MiB); target ≤ 1.10×",
			verdict(cv/sv <= 1.1), cv/sv, small, sv/mib)
		if z := med("borg-zstd3", "incremental", "repo_bytes"); !math.IsNaN(z) {
			fmt.Printf(" (borg zstd,3: %.2f×)", cv/z)
		}
		fmt.Println()
	}
	if added := med("cairn", "incremental", "added"); !math.IsNaN(added) {
		fmt.Printf("- cairn incremental: %.1f MiB added to the vault (compressed)", added/mib)
		if ch := med("cairn", "incremental", "changed"); !math.IsNaN(ch) {
			fmt.Printf(", %.1f MiB of blocks seen as changed", ch/mib)
		}
		if *changed > 0 {
			fmt.Printf("; the disks really differ in %.1f MiB of 4 KiB blocks", float64(*changed)/mib)
		}
		fmt.Println()
	}
	for _, tool := range tools[1:] {
		g := med(tool, "incremental", "repo_bytes") - med(tool, "full", "repo_bytes")
		fmt.Printf("- %s repository grew %.1f MiB with the incremental backup\n", tool, g/mib)
	}
	g := med("cairn", "incremental", "repo_bytes") - med("cairn", "full", "repo_bytes")
	fmt.Printf("- cairn vault grew %.1f MiB with the incremental backup\n", g/mib)
	return nil
}

// runChunks prints the chunk-size table of bench/chunksize.sh from its
// results file (columns chunk, round, full_wall, incr_wall, allocated,
// incr_added, vault_full, vault_both, reads_per_s, us_per_read).
func runChunks(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: chunks RESULTS.tsv")
	}
	t, err := readTable(args[0])
	if err != nil {
		return err
	}
	var chunks []string
	for _, r := range t.rows {
		if !slices.Contains(chunks, r["chunk"]) {
			chunks = append(chunks, r["chunk"])
		}
	}
	fmt.Printf("| chunk | runs | full wall s | full MB/s | incr wall s | incr added MiB | vault after full MiB | vault after both MiB | random 4 KiB reads/s | µs per read |\n")
	fmt.Printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range chunks {
		sel := map[string]string{"chunk": c}
		m := func(col string) float64 { return t.median(col, sel) }
		fmt.Printf("| %s | %d | %.2f | %.0f | %.2f | %.1f | %.1f | %.1f | %.0f | %.0f |\n", c, t.count(sel),
			m("full_wall"), m("allocated")/m("full_wall")/1e6, m("incr_wall"), m("incr_added")/mib,
			m("vault_full")/mib, m("vault_both")/mib, m("reads_per_s"), m("us_per_read"))
	}
	return nil
}
