package integration

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// normalize hides what differs between two runs of one command: how long
// it took.
func normalize(s string) string {
	s = regexp.MustCompile(`"duration_seconds": [0-9.e-]+`).ReplaceAllString(s, `"duration_seconds": 0`)
	return regexp.MustCompile(` in [0-9.]+(µs|ms|s|m[0-9.]*s)`).ReplaceAllString(s, " in T")
}

// interruptedBackup starts a backup of img as resource name, interrupts
// it with SIGINT once it runs, and returns what it did.
func interruptedBackup(t *testing.T, vault, name, img string) result {
	t.Helper()
	cmd := exec.Command(cairnBin, "backup", "--name", name, img)
	cmd.Env = append(os.Environ(), "CAIRN_VAULT="+vault)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Interrupt once the backup reads its source (in this process, or in
	// the daemon for it): a fixed sleep could end before cairn installs
	// its handler on a loaded machine.
	waitOpened(t, img, 30*time.Second)
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	}
	return r
}

// waitOpened waits until some process holds path open.
func waitOpened(t *testing.T, path string, timeout time.Duration) {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
		for _, fd := range fds {
			if l, err := os.Readlink(fd); err == nil && l == abs {
				return
			}
		}
	}
	t.Fatalf("no process opened %s in %s", path, timeout)
}

// TestCommandsSameWithDaemon runs a set of commands on a vault, first on
// their own, then while a daemon owns the vault (so that they run
// through its API): stdout, stderr and exit codes must be the same, up
// to durations. The daemon's job list then names the jobs they ran.
func TestCommandsSameWithDaemon(t *testing.T) {
	needTool(t, "mkfs.ext4", "zstd")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	img := makeExt4(t, dir, "24M", 2<<20)
	mustCairn(t, vault, "init", "--chunk-size", "64K")
	p1 := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "vm", img))
	scribble(t, img, 11, 4, 4<<10, 8<<20, 24<<20)
	p2 := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "vm", "disk="+img))
	var root []struct{ Name, Type string }
	mustJSON(t, mustCairn(t, vault, "ls", p2+":disk", "--json"), &root)
	file := ""
	for _, e := range root {
		if e.Type == "dir" && e.Name != "lost+found" {
			var sub []struct{ Name, Type string }
			mustJSON(t, mustCairn(t, vault, "ls", p2+":disk/"+e.Name, "--json"), &sub)
			for _, f := range sub {
				if f.Type == "file" {
					file = e.Name + "/" + f.Name
					break
				}
			}
		}
		if file != "" {
			break
		}
	}
	if file == "" {
		t.Fatalf("no file found in %s", p2)
	}
	target := filepath.Join(dir, "restored.img")

	cmds := [][]string{
		{"points"},
		{"points", "vm", "--wide"},
		{"points", "--json"},
		{"show", p1},
		{"show", "vm@latest", "--json"},
		{"stats"},
		{"stats", "--json"},
		{"vault", "show", "--json"},
		{"verify"},
		{"verify", "--data", "--json"},
		{"ls", p2},
		{"ls", p2 + ":disk", "--json"},
		{"ls", p2 + ":disk/" + file},
		{"cat", p2 + ":disk/" + file},
		{"cat", p2 + ":disk.raw"},
		{"restore", p1, target, "--json"},
		{"restore", p1, target},
		{"restore", p1, target, "--force", "--quiet"},
		{"sh", "export", p2, "--format", "raw", "--compress", "zstd", "-o", "-", "|", "zstd", "-dc"},
		{"export", p2, "--format", "qcow2", "-o", filepath.Join(dir, "e.qcow2"), "--json"},
		{"prune", "--keep-last", "1", "--dry-run"},
		{"prune", "--keep-hourly", "1", "--dry-run"},
		{"prune", "--keep-daily", "1", "--dry-run", "--json", "--tz", "Europe/Berlin"},
		{"gc", "--dry-run"},
		{"gc", "--dry-run", "--json"},
		{"pin", p1},
		{"delete", p1},
		{"unpin", p1, "--json"},
		{"vault", "set", "--capacity", "1G"},
		{"vault", "set", "--capacity", "none"},
		// Failures: one line and the same exit code.
		{"points", "--bogus"},
		{"backup", "--name", "no good", img},
		{"backup", "--name", "vm", filepath.Join(dir, "missing.img")},
		{"show", "vm@nope"},
		{"show", "vm@nope", "--json"},
		{"restore", "vm@nope", target},
		{"restore", p1, target},
		{"export", p2, "-o", "-"},
		{"export", p2, "--format", "raw", "--disk", "vdz", "-o", "-"},
		{"ls", p2 + ":nodisk"},
		{"cat", p2 + ":disk/no/such/file"},
		{"cat", p2},
		{"prune"},
		{"delete", "vm@nope", p1},
		{"gc", "--threshold", "2"},
	}
	runAll := func() []result {
		var out []result
		for _, c := range cmds {
			var r result
			if c[0] == "sh" {
				i := len(c) - 3 // ... | zstd -dc
				sh := exec.Command("sh", append([]string{"-c", `"$0" "$@" | ` + strings.Join(c[i+1:], " "), cairnBin}, c[1:i]...)...)
				sh.Env = append(os.Environ(), "CAIRN_VAULT="+vault)
				var o, e bytes.Buffer
				sh.Stdout, sh.Stderr = &o, &e
				err := sh.Run()
				r = result{stdout: o.String(), stderr: e.String()}
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					r.code = ee.ExitCode()
				}
			} else {
				r = cairn(t, vault, c...)
			}
			r.stdout, r.stderr = normalize(r.stdout), normalize(r.stderr)
			out = append(out, r)
		}
		return out
	}
	// Times print in the user's zone, and prune reckons days in it,
	// wherever the daemon runs.
	t.Setenv("TZ", "Europe/Berlin")
	local := runAll()
	os.Remove(target)
	os.Remove(filepath.Join(dir, "e.qcow2"))
	t.Setenv("TZ", "America/New_York")
	d := startDaemon(t, vault)
	t.Setenv("TZ", "Europe/Berlin")
	through := runAll()
	for i, c := range cmds {
		if l, r := local[i], through[i]; l != r {
			t.Errorf("cairn %s:\nwithout a daemon: exit %d\n%s\n%s\nthrough the daemon: exit %d\n%s\n%s", strings.Join(c, " "),
				l.code, l.stdout, l.stderr, r.code, r.stdout, r.stderr)
		}
	}
	// Spot checks that the commands did what they say.
	ran := func(args ...string) result {
		t.Helper()
		for i, c := range cmds {
			if strings.Join(c, " ") == strings.Join(args, " ") {
				return local[i]
			}
		}
		t.Fatalf("no command %v", args)
		return result{}
	}
	if r := ran("points"); r.code != 0 || !strings.Contains(r.stdout, p2) {
		t.Errorf("points: %+v", r)
	}
	if r := ran("cat", p2+":disk.raw"); r.code != 0 || len(r.stdout) != 24<<20 {
		t.Errorf("cat of the disk: exit %d, %d bytes %q", r.code, len(r.stdout), r.stderr)
	}
	if r := ran("sh", "export", p2, "--format", "raw", "--compress", "zstd", "-o", "-", "|", "zstd", "-dc"); r.code != 0 || len(r.stdout) != 24<<20 {
		t.Errorf("export -o - | zstd -d: exit %d, %d bytes %q", r.code, len(r.stdout), r.stderr)
	}
	for want, args := range map[int][]string{2: {"points", "--bogus"}, 1: {"show", "vm@nope"}} {
		if r := ran(args...); r.code != want || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%v: exit %d %q, want %d and one line", args, r.code, r.stderr, want)
		}
	}

	// Ctrl-C of a backup: exit 130, one line, nothing committed.
	// (A cancelled backup may leave blocks in packs, for the next gc;
	// never a point.)
	stateBefore := mustCairn(t, vault, "points", "--json")
	throughInt := interruptedBackup(t, vault, "big", bigImage(t, 2, 384<<20))
	if mustCairn(t, vault, "points", "--json") != stateBefore {
		t.Errorf("an interrupted backup through the daemon committed something")
	}

	// The daemon ran the work as jobs, one line each in its log.
	var jobs []struct{ Kind, State string }
	mustJSON(t, mustCairn(t, vault, "jobs", "--all", "--json"), &jobs)
	kinds := map[string]int{}
	for _, j := range jobs {
		kinds[j.Kind+":"+j.State]++
	}
	for k, n := range map[string]int{"verify:succeeded": 2, "restore:succeeded": 2, "restore:failed": 3, "export:succeeded": 2,
		"export:failed": 1, "prune:succeeded": 3, "gc:succeeded": 2, "pin:succeeded": 1, "delete:failed": 2,
		"unpin:succeeded": 1, "backup:canceled": 1, "backup:failed": 1} {
		if kinds[k] != n {
			t.Errorf("%d jobs %s, want %d (jobs: %v)", kinds[k], k, n, kinds)
		}
	}
	if n := len(regexp.MustCompile(`(?m)^cairn: \S+ \S+ job \S+ `).FindAllString(d.log.String(), -1)); n != len(jobs) {
		t.Errorf("%d job lines in the daemon's log for %d jobs:\n%s", n, len(jobs), d.log)
	}
	d.stop(t)

	localInt := interruptedBackup(t, vault, "big", bigImage(t, 3, 384<<20))
	if localInt.code != 130 || localInt.stderr != "cairn: interrupted\n" || localInt != throughInt || mustCairn(t, vault, "points", "--json") != stateBefore {
		t.Errorf("interrupted backup: %+v without a daemon, %+v through it; want exit 130, one line, nothing committed",
			localInt, throughInt)
	}

	// Without a daemon, the commands about jobs say there is none.
	for _, c := range [][]string{{"jobs"}, {"job", "show", "x"}, {"cancel", "x"}} {
		r := cairn(t, vault, c...)
		if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "needs a running daemon") {
			t.Errorf("cairn %v without a daemon: exit %d %q", c, r.code, r.stderr)
		}
	}
}
