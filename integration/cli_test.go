package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCommandLine checks what a first-time user meets at the command
// line: the version, typos, exit codes and errors under --json.
func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	cases := []struct {
		name string
		args []string
		code int
		want string // in stderr, or in stdout for exit 0
	}{
		{"version", []string{"--version"}, 0, "cairn "},
		{"typo gets a suggestion", []string{"backpu"}, 2, `did you mean "backup"`},
		{"no suggestion for nonsense", []string{"frobnicate"}, 2, `unknown command "frobnicate" (see: cairn --help)`},
		{"wrong global flag names cairn once", []string{"--frob"}, 2, "(see: cairn --help)"},
		{"wrong command flag", []string{"points", "--frob"}, 2, "(see: cairn points --help)"},
		{"wrong subcommand flag", []string{"policy", "set", "web", "--disk", "x"}, 2, "(see: cairn policy set --help)"},
		{"global flag after a subcommand", []string{"vault", "show", "--vault", vault}, 1, "not a cairn vault"},
		{"bad chunk size is a wrong command line", []string{"init", "--chunk-size", "3K"}, 2, "power of two"},
		{"bad compression is a wrong command line", []string{"init", "--compression", "xz"}, 2, "unknown compression"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := cairn(t, vault, c.args...)
			if r.code != c.code {
				t.Errorf("exit %d, want %d (stderr %q)", r.code, c.code, r.stderr)
			}
			out := r.stderr
			if c.code == 0 {
				out = r.stdout
			} else if lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n"); len(lines) != 1 {
				t.Errorf("stderr is not one line: %q", r.stderr)
			}
			if !strings.Contains(out, c.want) {
				t.Errorf("output %q lacks %q", out, c.want)
			}
			if strings.Contains(out, "cairn cairn") {
				t.Errorf("doubled name: %q", out)
			}
		})
	}
	if _, err := os.Stat(vault); err == nil {
		t.Error("a refused init made the vault")
	}

	// Under --json an error is a JSON object on stderr, with the exit code.
	r := cairn(t, vault, "points", "--json")
	var e struct {
		Error    string `json:"error"`
		ExitCode int    `json:"exit_code"`
	}
	if err := json.Unmarshal([]byte(r.stderr), &e); err != nil || r.code != 1 || e.ExitCode != 1 ||
		!strings.Contains(e.Error, "not a cairn vault") {
		t.Errorf("points --json on no vault: exit %d, stderr %q (%v)", r.code, r.stderr, err)
	}
	r = cairn(t, vault, "init", "--chunk-size", "3K", "--json")
	if err := json.Unmarshal([]byte(r.stderr), &e); err != nil || r.code != 2 || e.ExitCode != 2 {
		t.Errorf("init --json with a bad size: exit %d, stderr %q", r.code, r.stderr)
	}
}

// helpCommands lists the commands a --help page shows under COMMANDS.
func helpCommands(help string) []string {
	var cmds []string
	inCommands := false
	for _, l := range strings.Split(help, "\n") {
		switch {
		case strings.HasPrefix(l, "COMMANDS:"):
			inCommands = true
		case inCommands && strings.HasPrefix(l, "   ") && !strings.HasPrefix(l, "    "):
			name := strings.TrimSuffix(strings.Fields(l)[0], ",")
			if name != "help" {
				cmds = append(cmds, name)
			}
		case inCommands && l != "" && !strings.HasPrefix(l, " "):
			inCommands = false
		}
	}
	return cmds
}

// allCommands walks cairn's help: every command and subcommand, as
// argument lists ("policy set"), with its --help page.
func allCommands(t *testing.T) map[string]string {
	t.Helper()
	pages := map[string]string{}
	var walk func(path []string)
	walk = func(path []string) {
		h := mustCairn(t, "", append(path, "--help")...)
		if len(path) > 0 {
			pages[strings.Join(path, " ")] = h
		}
		for _, c := range helpCommands(h) {
			if len(path) == 0 || c != path[len(path)-1] {
				walk(append(slices.Clone(path), c))
			}
		}
	}
	walk(nil)
	if len(pages) < 20 {
		t.Fatalf("found only %d commands in --help", len(pages))
	}
	return pages
}

// TestHelpHasExamples checks every command's --help: it exits 0 and
// shows at least one example of the command itself.
func TestHelpHasExamples(t *testing.T) {
	out := mustCairn(t, "", "--help")
	for c, h := range allCommands(t) {
		if !strings.Contains(h, "Examples:") || !strings.Contains(h, "cairn "+c) {
			t.Errorf("cairn %s --help has no example:\n%s", c, h)
		}
	}
	for _, want := range []string{"--quiet", "--no-progress", "--version", "130"} {
		if !strings.Contains(out, want) {
			t.Errorf("cairn --help does not mention %s", want)
		}
	}
}

// TestJSONConventions checks the --json output rules: empty lists are
// [], absent values are left out, durations are seconds to the
// millisecond, stats carries the vault's settings, and a source path is
// recorded absolute.
func TestJSONConventions(t *testing.T) {
	needTool(t, "mkfs.ext4")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	img := makeExt4(t, dir, "32M", 2<<20)
	mustCairn(t, vault, "init", "--chunk-size", "64K", "--compression", "lz4")

	// A relative source path, from the image's folder.
	cmd := exec.Command(cairnBin, "backup", "--name", "a", "--json", filepath.Base(img))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CAIRN_VAULT="+vault)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	var p map[string]any
	mustJSON(t, string(out), &p)
	disk := p["disks"].([]any)[0].(map[string]any)
	if disk["source"] != img {
		t.Errorf("source recorded as %q, want %q", disk["source"], img)
	}
	if s := p["duration_seconds"].(float64); s*1000 != float64(int64(s*1000+0.5)) {
		t.Errorf("duration_seconds %v has more than millisecond precision", s)
	}
	if _, ok := p["parent"]; ok {
		t.Errorf("a full point has a parent: %v", p["parent"])
	}

	var v map[string]any
	mustJSON(t, mustCairn(t, vault, "verify", "--json"), &v)
	for _, k := range []string{"problems", "damaged_points", "notes"} {
		if l, ok := v[k].([]any); !ok || len(l) != 0 {
			t.Errorf("verify --json %s = %#v, want []", k, v[k])
		}
	}

	var show map[string]any
	mustJSON(t, mustCairn(t, vault, "show", "a@latest", "--json"), &show)
	sd := show["disks"].([]any)[0].(map[string]any)
	if _, ok := sd["partition_table"]; ok {
		t.Errorf("a bare filesystem disk has a partition_table: %#v", sd["partition_table"])
	}
	if l, ok := sd["partitions"].([]any); !ok || len(l) != 0 {
		t.Errorf("partitions = %#v, want []", sd["partitions"])
	}

	var st map[string]any
	mustJSON(t, mustCairn(t, vault, "stats", "--json"), &st)
	if st["chunk_size"] != float64(64<<10) || st["compression"] != "lz4" {
		t.Errorf("stats --json: chunk_size %v, compression %v", st["chunk_size"], st["compression"])
	}
}

// TestPointsTable checks that points fits 80 columns, shows local time,
// and marks a point whose disks changed, with --wide for more.
func TestPointsTable(t *testing.T) {
	needTool(t, "mkfs.ext4")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	img := makeExt4(t, dir, "32M", 2<<20)
	other := filepath.Join(dir, "r.img")
	copyFile(t, img, other)
	mustCairn(t, vault, "init")
	mustCairn(t, vault, "backup", "--name", "web01", "vda="+img)

	// Backed up again under the file's own name, with a second disk: vda
	// was renamed to disk (same source), r was added.
	r := cairn(t, vault, "backup", "--name", "web01", "--require-same-disks", img, other)
	if r.code != 1 || !strings.Contains(r.stderr, "vda renamed to disk; r added") {
		t.Errorf("--require-same-disks: exit %d, %q", r.code, r.stderr)
	}
	r = cairn(t, vault, "backup", "--name", "web01", img, other)
	if r.code != 0 || !strings.Contains(r.stderr, "note:") || !strings.Contains(r.stderr, "vda renamed to disk; r added") {
		t.Errorf("backup with other disks: exit %d, stderr %q", r.code, r.stderr)
	}
	second := strings.TrimSpace(r.stdout)
	var p struct {
		Disks []struct {
			Name, Type   string
			ComparedWith string `json:"compared_with"`
		}
		DiskChanges struct {
			Added   []string
			Removed []string
			Renamed []struct{ From, To string }
		} `json:"disk_changes"`
	}
	mustJSON(t, mustCairn(t, vault, "show", second, "--json"), &p)
	if len(p.Disks) != 2 || p.Disks[0].Type != "incremental" || p.Disks[0].ComparedWith != "vda" ||
		p.Disks[1].Type != "full" || len(p.DiskChanges.Added) != 1 || len(p.DiskChanges.Renamed) != 1 {
		t.Errorf("show --json: %+v", p)
	}
	if out := mustCairn(t, vault, "show", second); !strings.Contains(out, "vda renamed to disk; r added") {
		t.Errorf("show does not say how the disks changed:\n%s", out)
	}

	cmd := exec.Command(cairnBin, "points")
	cmd.Env = append(os.Environ(), "CAIRN_VAULT="+vault, "TZ=Asia/Kolkata")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[3], "* "+second+": vda renamed to disk") {
		t.Errorf("points: want a header, two rows and a note:\n%s", out)
	}
	for _, l := range lines[:3] {
		if len(l) > 80 {
			t.Errorf("points line of %d columns: %q", len(l), l)
		}
	}
	// The ID is UTC; the TIME column is the local time, 5:30 ahead.
	var pts []struct{ Time string }
	mustJSON(t, mustCairn(t, vault, "points", "--json"), &pts)
	utc, err := time.Parse(time.RFC3339Nano, pts[0].Time)
	if err != nil || !strings.HasSuffix(pts[0].Time, "Z") {
		t.Fatalf("--json time %q is not UTC (%v)", pts[0].Time, err)
	}
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	if err != nil {
		t.Fatal(err)
	}
	if want := utc.In(kolkata).Format("2006-01-02 15:04"); !strings.Contains(lines[1], want) {
		t.Errorf("TIME column %q is not the local time %s", lines[1], want)
	}
	wide := mustCairn(t, vault, "points", "--wide")
	if !strings.Contains(wide, "ALLOCATED") || !strings.Contains(wide, "incremental*") {
		t.Errorf("points --wide:\n%s", wide)
	}
}

// TestCatLeadingSlash checks that POINT:/DISK/PATH works as POINT:DISK/PATH.
func TestCatLeadingSlash(t *testing.T) {
	needTool(t, "mkfs.ext4", "cmp")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(filepath.Join(tree, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "etc", "hostname"), []byte("web01\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "vda.img")
	sh(t, "mkfs.ext4", "-q", "-d", tree, img, "16M")
	mustCairn(t, vault, "init")
	mustCairn(t, vault, "backup", "--name", "web01", img)
	for _, ref := range []string{"web01@latest:vda/etc/hostname", "web01@latest:/vda/etc/hostname"} {
		if out := mustCairn(t, vault, "cat", ref); out != "web01\n" {
			t.Errorf("cat %s = %q", ref, out)
		}
	}
}

// TestEveryCommandRefusesBadCommandLines walks every command and
// subcommand with a flag it lacks, without the arguments its usage
// requires, with one argument more than its usage takes, and with an
// unknown subcommand (cairn itself too): each exits 2 with one line
// that names the help or the usage to read, and leaves no vault behind.
func TestEveryCommandRefusesBadCommandLines(t *testing.T) {
	vault := filepath.Join(t.TempDir(), "vault")
	usageLine := regexp.MustCompile(`(?m)^USAGE:\n\s+cairn (.*)$`)
	expect := func(args []string, want string) {
		t.Helper()
		r := cairn(t, vault, args...)
		lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
		if r.code != 2 || len(lines) != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("cairn %s: exit %d, stderr %q; want exit 2 and one line with %q", strings.Join(args, " "), r.code, r.stderr, want)
		}
	}
	tried := 0
	for path, help := range allCommands(t) {
		words := strings.Fields(path)
		if len(helpCommands(help)) > 0 {
			expect(append(slices.Clone(words), "frobnicate"), "unknown command \"frobnicate\"")
			tried++
			continue
		}
		expect(append(slices.Clone(words), "--frobnicate"), "(see: cairn "+path+" --help)")
		tried++
		m := usageLine.FindStringSubmatch(help)
		if m == nil {
			t.Errorf("cairn %s --help has no usage line", path)
			continue
		}
		usage := strings.TrimSpace(strings.TrimPrefix(m[1], path))
		usage = strings.TrimSpace(strings.TrimPrefix(usage, "[command options]"))
		if usage != "" && !strings.HasPrefix(usage, "[") {
			expect(words, "usage: cairn "+path)
			tried++
		}
		if !strings.Contains(usage, "...") { // it takes a bounded number of arguments
			expect(append(slices.Clone(words), slices.Repeat([]string{"x"}, len(strings.Fields(usage))+1)...), "usage: cairn "+path)
			tried++
		}
	}
	expect([]string{"frobnicate"}, `unknown command "frobnicate" (see: cairn --help)`)
	expect([]string{"--frobnicate", "points"}, "(see: cairn --help)")
	tried += 2
	t.Logf("%d bad command lines tried", tried)
	if _, err := os.Stat(vault); err == nil {
		t.Error("a refused command made a vault")
	}
}
