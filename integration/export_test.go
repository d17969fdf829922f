package integration

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

type exportJSON struct {
	Point       string  `json:"point"`
	Disk        string  `json:"disk"`
	Format      string  `json:"format"`
	Compression string  `json:"compression"`
	ClusterSize int64   `json:"cluster_size"`
	VirtualSize int64   `json:"virtual_size"`
	FileSize    int64   `json:"file_size"`
	Ratio       float64 `json:"ratio"`
	Seconds     float64 `json:"duration_seconds"`
}

type qemuInfo struct {
	VirtualSize    int64  `json:"virtual-size"`
	ClusterSize    int64  `json:"cluster-size"`
	Format         string `json:"format"`
	FormatSpecific struct {
		Data struct {
			Compat          string `json:"compat"`
			CompressionType string `json:"compression-type"`
		} `json:"data"`
	} `json:"format-specific"`
}

// exportFixture backs up a real ext4 disk and restores it: the vault,
// the point, the restored raw and a scratch directory.
func exportFixture(t *testing.T) (vault, point, restored, dir string) {
	t.Helper()
	needTool(t, "mkfs.ext4", "qemu-img", "e2fsck")
	dir = t.TempDir()
	vault = filepath.Join(dir, "vault")
	img := makeExt4(t, dir, "64M", 24<<20)
	mustCairn(t, vault, "init")
	point = strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "vm", img))
	restored = filepath.Join(dir, "restored.raw")
	mustCairn(t, vault, "restore", point, restored)
	sameFile(t, img, restored)
	return vault, point, restored, dir
}

// checkQcow2 runs qemu-img check, info and compare on an exported image.
func checkQcow2(t *testing.T, img, restored, compression string) {
	t.Helper()
	sh(t, "qemu-img", "check", img) // exit 0: no errors, leaks or corruptions
	var info qemuInfo
	mustJSON(t, sh(t, "qemu-img", "info", "--output=json", img), &info)
	if info.Format != "qcow2" || info.VirtualSize != fileSize(t, restored) || info.FormatSpecific.Data.Compat != "1.1" {
		t.Errorf("%s: qemu-img info %+v, want qcow2 v3 of %d bytes", img, info, fileSize(t, restored))
	}
	want := "zlib"
	if compression == "zstd" {
		want = "zstd"
	}
	if info.FormatSpecific.Data.CompressionType != want {
		t.Errorf("%s: compression type %q, want %q", img, info.FormatSpecific.Data.CompressionType, want)
	}
	if out := sh(t, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", img, restored); !strings.Contains(out, "identical") {
		t.Errorf("qemu-img compare: %s", out)
	}
}

func TestExportRoundTrips(t *testing.T) {
	t.Parallel() // long and self-contained: overlaps the other long tests
	vault, point, restored, dir := exportFixture(t)
	size := fileSize(t, restored)

	// zstd defaults to clusters of the vault's chunk size (256K) and
	// copies the vault's blocks; 64K gives the older layout; 4K clusters
	// make many tables.
	for _, c := range []struct{ compress, level, cluster string }{{"", "", ""}, {"zstd", "", ""}, {"none", "", ""},
		{"zlib", "1", ""}, {"zstd", "1", ""}, {"zstd", "", "64K"}, {"zlib", "", "4K"}} {
		t.Run("qcow2-"+c.compress+c.level+c.cluster, func(t *testing.T) {
			out := filepath.Join(dir, "vm-"+c.compress+c.level+c.cluster+".qcow2")
			args := []string{"export", point, "--format", "qcow2", "-o", out, "--json"}
			if c.compress != "" {
				args = append(args, "--compress", c.compress)
			}
			if c.level != "" {
				args = append(args, "--level", c.level)
			}
			cluster := int64(64 << 10)
			if c.compress == "zstd" {
				cluster = 256 << 10 // the vault's chunk size
			}
			if c.cluster != "" {
				args = append(args, "--cluster-size", c.cluster)
				cluster, _ = strconv.ParseInt(strings.TrimSuffix(c.cluster, "K"), 10, 64)
				cluster <<= 10
			}
			var res exportJSON
			mustJSON(t, mustCairn(t, vault, args...), &res)
			checkQcow2(t, out, restored, c.compress)
			var info qemuInfo
			mustJSON(t, sh(t, "qemu-img", "info", "--output=json", out), &info)
			if info.ClusterSize != cluster || res.ClusterSize != cluster {
				t.Errorf("cluster size: qemu-img info %d, --json %d, want %d", info.ClusterSize, res.ClusterSize, cluster)
			}
			want := c.compress
			if want == "" {
				want = "zlib"
			}
			if res.Format != "qcow2" || res.Compression != want || res.Disk != "disk" || res.Point != point ||
				res.VirtualSize != size || res.FileSize != fileSize(t, out) || res.Seconds <= 0 {
				t.Errorf("--json: %+v", res)
			}
			if c.compress != "none" && res.Ratio < 2 {
				t.Errorf("compressed qcow2 of an ext4 disk with 24 MiB of source code: ratio %.2f", res.Ratio)
			}
		})
	}

	// zstd at level 1 copies the vault's blocks.
	for _, c := range []struct{ codec, level string }{{"none", ""}, {"zstd", ""}, {"zstd", "1"}, {"lz4", ""}, {"gzip", ""}} {
		codec := c.codec
		t.Run("raw-"+codec+c.level, func(t *testing.T) {
			if codec != "none" {
				needTool(t, codec)
			}
			out := filepath.Join(dir, "vm.raw."+codec+c.level)
			args := []string{"export", point, "--format", "raw", "--compress", codec, "-o", out, "--json"}
			if c.level != "" {
				args = append(args, "--level", c.level)
			}
			var res exportJSON
			mustJSON(t, mustCairn(t, vault, args...), &res)
			if codec == "zstd" {
				// Copied blocks are a frame each (256 KiB), compressed
				// chunks 4 MiB: zstd -l counts them.
				var frames int64
				fmt.Sscan(strings.Split(sh(t, "zstd", "-l", out), "\n")[1], &frames)
				if copied := frames > size>>20; copied != (c.level == "1") {
					t.Errorf("--level %q: %d frames for %d bytes", c.level, frames, size)
				}
			}
			plain := out
			if codec != "none" {
				plain = out + ".plain"
				sh(t, "sh", "-c", codec+" -d -c <'"+out+"' >'"+plain+"'")
				if res.Ratio < 2 {
					t.Errorf("ratio %.2f", res.Ratio)
				}
			} else if a := allocated(t, out); a > allocated(t, restored)+1<<20 || a > size/2 {
				// The sparse raw holds the stored blocks only.
				t.Errorf("sparse raw export occupies %d bytes (restored %d, disk %d)", a, allocated(t, restored), size)
			}
			sameFile(t, restored, plain)
			if res.FileSize != fileSize(t, out) || res.VirtualSize != size {
				t.Errorf("--json: %+v (file %d)", res, fileSize(t, out))
			}
			if codec == "none" || codec == "zstd" {
				sh(t, "e2fsck", "-fn", plain)
			}
		})
	}
	testExportStdout(t, vault, point, restored, dir)

	// Ctrl-C stops an export and leaves no file behind.
	t.Run("interrupt", func(t *testing.T) {
		out := filepath.Join(dir, "interrupted.raw.gz")
		// Interrupt sooner each time an export outruns the signal; one
		// that always finishes first is a failure, not a skip.
		var err error
		var stderr bytes.Buffer
		for _, delay := range []time.Duration{150 * time.Millisecond, 30 * time.Millisecond, 5 * time.Millisecond} {
			os.Remove(out)
			cmd := exec.Command(cairnBin, "export", point, "--format", "raw", "--compress", "gzip", "--level", "9", "-o", out)
			cmd.Env = append(os.Environ(), "CAIRN_VAULT="+vault)
			stderr.Reset()
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(delay)
			cmd.Process.Signal(os.Interrupt)
			if err = cmd.Wait(); err != nil {
				break
			}
		}
		var ee *exec.ExitError
		if err == nil {
			t.Fatal("every export finished before its interrupt")
		}
		if !errors.As(err, &ee) || ee.ExitCode() != 130 {
			t.Errorf("interrupted export: %v, want exit 130", err)
		}
		if got := stderr.String(); got != "cairn: interrupted\n" {
			t.Errorf("interrupted export printed %q, want one line saying so", got)
		}
		if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("interrupted export left its output: %v", err)
		}
		leftovers(t, dir, filepath.Base(out))
	})

	// kill -9 leaves the temporary file (never the final name); the next
	// export to the same name removes it.
	t.Run("kill", func(t *testing.T) {
		out := filepath.Join(dir, "killed.qcow2")
		args := []string{"export", point, "--format", "qcow2", "--level", "9", "--cluster-size", "4K", "-o", out}
		cmd := exec.Command(cairnBin, args...)
		cmd.Env = append(os.Environ(), "CAIRN_VAULT="+vault)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var temps []string
		waitFor(10*time.Second, func() bool {
			temps, _ = filepath.Glob(filepath.Join(dir, ".killed.qcow2.cairn-*"))
			return len(temps) > 0
		})
		cmd.Process.Kill()
		cmd.Wait()
		if len(temps) != 1 {
			t.Fatalf("temporary files while exporting: %v", temps)
		}
		if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("killed export left its final name: %v", err)
		}
		old := time.Now().Add(-time.Minute) // as a run killed a while ago
		if err := os.Chtimes(temps[0], old, old); err != nil {
			t.Fatal(err)
		}
		mustCairn(t, vault, args...)
		checkQcow2(t, out, restored, "zlib")
		leftovers(t, dir, filepath.Base(out))
	})
}

// testExportStdout streams images through a pipe, locally and through a
// daemon that owns the vault (which streams the image in an HTTP answer).
func testExportStdout(t *testing.T, vault, point, restored, dir string) {
	// pipe runs cairn ARGS | cat >OUT, with env added to its environment.
	pipe := func(t *testing.T, out string, env []string, args ...string) string {
		t.Helper()
		cmd := exec.Command("sh", append([]string{"-c", `"$0" "$@" | cat >"$OUT"`, cairnBin}, args...)...)
		cmd.Env = append(append(os.Environ(), "CAIRN_VAULT="+vault, "OUT="+out), env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("cairn %v | cat: %v: %s", args, err, stderr.String())
		}
		return stderr.String()
	}
	run := func(t *testing.T) {
		q := filepath.Join(dir, "stdout.qcow2")
		stderr := pipe(t, q, nil, "export", point, "--format", "qcow2", "-o", "-", "--json")
		checkQcow2(t, q, restored, "zlib")
		var res exportJSON
		mustJSON(t, stderr, &res) // with -o -, --json goes to stderr
		if res.FileSize != fileSize(t, q) {
			t.Errorf("--json file_size %d, stdout carried %d bytes", res.FileSize, fileSize(t, q))
		}
		// Uncompressed qcow2 streams tables first, with no temporary file.
		p := filepath.Join(dir, "stdout-plain.qcow2")
		pipe(t, p, nil, "export", point, "--format", "qcow2", "--compress", "none", "-o", "-")
		checkQcow2(t, p, restored, "none")
		// So does zstd with the vault's blocks copied as clusters.
		f := filepath.Join(dir, "stdout-frames.qcow2")
		pipe(t, f, nil, "export", point, "--format", "qcow2", "--compress", "zstd", "--cluster-size", "256K", "-o", "-")
		checkQcow2(t, f, restored, "zstd")
		r := filepath.Join(dir, "stdout.raw")
		pipe(t, r, nil, "export", point, "--format", "raw", "-o", "-")
		sameFile(t, restored, r)
		z := filepath.Join(dir, "stdout.raw.zst")
		pipe(t, z, nil, "export", point, "--format", "raw", "--compress", "zstd", "-o", "-")
		sh(t, "zstd", "-q", "-d", "-f", z, "-o", r)
		sameFile(t, restored, r)
		// An image is not written to a terminal (script gives the
		// command one as stdout).
		needTool(t, "script")
		c := exec.Command("script", "-qec", "'"+cairnBin+"' export '"+point+"' --format qcow2 -o -", "/dev/null")
		c.Env = append(os.Environ(), "CAIRN_VAULT="+vault)
		out, err := c.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "stdout is a terminal") || len(out) > 200 {
			t.Errorf("export -o - to a terminal: %v, %d bytes of output starting %q; want exit 2 and one line", err, len(out), out[:min(len(out), 200)])
		}
	}
	t.Run("stdout-local", run)
	// Tables first means no temporary file: both stream without one.
	t.Run("stdout-no-spool", func(t *testing.T) {
		noTmp := []string{"TMPDIR=" + filepath.Join(dir, "missing")}
		for _, c := range [][]string{{"none", "64K"}, {"zstd", "256K"}} {
			q := filepath.Join(dir, "nospool-"+c[0]+".qcow2")
			pipe(t, q, noTmp, "export", point, "--format", "qcow2", "--compress", c[0], "--cluster-size", c[1], "-o", "-")
			checkQcow2(t, q, restored, c[0])
		}
	})
	t.Run("stdout-daemon", func(t *testing.T) {
		cmd := exec.Command(cairnBin, "daemon")
		cmd.Env = append(os.Environ(), "CAIRN_VAULT="+vault)
		var log syncBuffer
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			cmd.Process.Signal(os.Interrupt)
			cmd.Wait()
		}()
		if !waitFor(10*time.Second, func() bool { return strings.Contains(log.String(), "serving") }) {
			t.Fatalf("daemon did not start:\n%s", log.String())
		}
		run(t)
		// Five jobs: the export to a terminal is refused by the client
		// (exit 2, checked in run) before it asks the daemon.
		if n := len(regexp.MustCompile(`job \S+ export \S+ succeeded`).FindAllString(log.String(), -1)); n != 5 {
			t.Errorf("%d exports ran in the daemon, want 5:\n%s", n, log.String())
		}
	})
}

// TestExportBadFlags checks wrong combinations get one usage line, exit
// 2, and create nothing; an existing file needs --force.
func TestExportBadFlags(t *testing.T) {
	needTool(t, "mkfs.ext4")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	img := makeExt4(t, dir, "16M", 1<<20)
	mustCairn(t, vault, "init")
	point := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "vm", img))
	out := filepath.Join(dir, "out.img")
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"qcow2 gzip", []string{"--format", "qcow2", "--compress", "gzip", "-o", out}, 2, "does not go with"},
		{"raw zlib", []string{"--format", "raw", "--compress", "zlib", "-o", out}, 2, "does not go with"},
		{"qcow2 lz4", []string{"--format", "qcow2", "--compress", "lz4", "-o", out}, 2, "does not go with"},
		{"no format", []string{"-o", out}, 2, "--format"},
		{"bad format", []string{"--format", "vmdk", "-o", out}, 2, "raw or qcow2"},
		{"no output", []string{"--format", "raw"}, 2, "-o"},
		{"level without codec", []string{"--format", "raw", "--level", "3", "-o", out}, 2, "--level"},
		{"level too high", []string{"--format", "qcow2", "--level", "10", "-o", out}, 2, "1 to 9"},
		{"cluster size with raw", []string{"--format", "raw", "--cluster-size", "256K", "-o", out}, 2, "qcow2 only"},
		{"cluster size not a power of two", []string{"--format", "qcow2", "--cluster-size", "96K", "-o", out}, 2, "power of two"},
		{"cluster size too large", []string{"--format", "qcow2", "--cluster-size", "4M", "-o", out}, 2, "4K to 2M"},
		{"cluster size not a size", []string{"--format", "qcow2", "--cluster-size", "big", "-o", out}, 2, "--cluster-size"},
		{"unknown disk", []string{"--format", "raw", "--disk", "vdz", "-o", out}, 1, "no disk"},
		{"output is a directory", []string{"--format", "raw", "-o", dir}, 1, "not a regular file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := cairn(t, vault, append([]string{"export", point}, c.args...)...)
			if r.code != c.code || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and one line with %q", r.code, r.stderr, c.code, c.want)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("output created: %v", err)
			}
		})
	}
	createSized(t, out, 5)
	if r := cairn(t, vault, "export", point, "--format", "raw", "-o", out); r.code != 1 || !strings.Contains(r.stderr, "--force") {
		t.Errorf("existing output: exit %d %q", r.code, r.stderr)
	}
	mustCairn(t, vault, "export", point, "--format", "raw", "-o", out, "--force")
	sameFile(t, img, out)
	leftovers(t, dir, "out.img")
}

// leftovers fails when a temporary file of name remains in dir.
func leftovers(t *testing.T, dir, name string) {
	t.Helper()
	if m, _ := filepath.Glob(filepath.Join(dir, "."+name+".cairn-*")); len(m) > 0 {
		t.Errorf("temporary files left: %v", m)
	}
}

// TestExportDamaged damages a stored block: every export fails naming the
// offset and leaves no file under the final name nor a temporary one.
func TestExportDamaged(t *testing.T) {
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	disk := createSized(t, filepath.Join(dir, "d.raw"), 8<<20)
	scribble(t, disk, 9, 1, 8<<20-1, 0, 8<<20)
	mustCairn(t, vault, "init", "--compression", "none")
	point := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "r", disk))
	// Without compression, disk offset X sits near pack offset X.
	damageOnlyPack(t, vault, func(int64) int64 { return 4 << 20 })

	for _, c := range [][]string{{"raw", "none"}, {"raw", "zstd"}, {"qcow2", "zlib"}, {"qcow2", "none"}} {
		out := filepath.Join(dir, "out."+c[0]+"."+c[1])
		r := cairn(t, vault, "export", point, "--format", c[0], "--compress", c[1], "-o", out)
		m := regexp.MustCompile(`disk d at offset (\d+):`).FindStringSubmatch(r.stderr)
		off := int64(-1)
		if m != nil {
			off, _ = strconv.ParseInt(m[1], 10, 64)
		}
		// The damage sits in the block at about 4 MiB (pack headers shift it).
		if r.code != 1 || off < 3<<20 || off > 4<<20 || !strings.Contains(r.stderr, point) ||
			strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want exit 1 naming the damaged offset", c, r.code, r.stderr)
		}
		if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%v: output left under its final name: %v", c, err)
		}
		leftovers(t, dir, filepath.Base(out))
	}
	// To a pipe the damage is an error too (the bytes before it went
	// out), with or without a daemon: through one, the failure comes
	// after the first byte, in the stream's trailer, and the command
	// fails the same way rather than end a short output quietly.
	local := []result{cairn(t, vault, "export", point, "--format", "raw", "-o", "-"), cairn(t, vault, "cat", point+":d.raw")}
	startDaemon(t, vault)
	through := []result{cairn(t, vault, "export", point, "--format", "raw", "-o", "-"), cairn(t, vault, "cat", point+":d.raw")}
	for i, what := range []string{"export -o -", "cat"} {
		l, d := local[i], through[i]
		if l.code != 1 || !strings.Contains(l.stderr, "offset") || strings.Count(l.stderr, "\n") != 1 || len(l.stdout) < 1<<20 ||
			len(l.stdout) >= 8<<20 {
			t.Errorf("%s of a damaged point: exit %d, %d bytes out, %q", what, l.code, len(l.stdout), l.stderr)
		}
		if d.code != l.code || d.stderr != l.stderr || len(d.stdout) != len(l.stdout) {
			t.Errorf("%s of a damaged point through the daemon: exit %d, %d bytes out, %q; without: exit %d, %d bytes, %q",
				what, d.code, len(d.stdout), d.stderr, l.code, len(l.stdout), l.stderr)
		}
	}
}

// Copying a zstd vault's blocks into a qcow2 checks each one first: a
// damaged block stops the export, to a file or a pipe, naming its offset.
func TestExportDamagedFrames(t *testing.T) {
	needTool(t, "qemu-img")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	disk := filepath.Join(dir, "d.raw")
	var b strings.Builder
	for i := 0; b.Len() < 8<<20; i++ {
		fmt.Fprintf(&b, "line %d of a compressible disk\n", i)
	}
	if err := os.WriteFile(disk, []byte(b.String()[:8<<20]), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCairn(t, vault, "init")
	point := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "r", disk))
	out := filepath.Join(dir, "ok.qcow2")
	mustCairn(t, vault, "export", point, "--format", "qcow2", "--compress", "zstd", "--cluster-size", "256K", "-o", out)
	checkQcow2(t, out, disk, "zstd")
	damageOnlyPack(t, vault, func(size int64) int64 { return size / 2 })

	// qcow2 with 256K clusters and raw zstd at level 1 copy the frames.
	for _, args := range [][]string{{"--format", "qcow2", "--compress", "zstd", "--cluster-size", "256K"},
		{"--format", "raw", "--compress", "zstd", "--level", "1"}} {
		out = filepath.Join(dir, "damaged."+args[1])
		r := cairn(t, vault, append([]string{"export", point, "-o", out}, args...)...)
		if r.code != 1 || !regexp.MustCompile(`disk d at offset \d+:`).MatchString(r.stderr) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want exit 1 naming the damaged offset", args, r.code, r.stderr)
		}
		if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%v: output left under its final name: %v", args, err)
		}
		leftovers(t, dir, filepath.Base(out))
	}
	cmd := exec.Command(cairnBin, "export", point, "--format", "qcow2", "--compress", "zstd", "--cluster-size", "256K", "-o", "-")
	cmd.Env = append(os.Environ(), "CAIRN_VAULT="+vault)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err == nil || !strings.Contains(stderr.String(), "offset") {
		t.Errorf("export to stdout of a damaged point: %v %q", err, stderr.String())
	}
}

// damageOnlyPack overwrites six bytes of the vault's only pack at the
// offset where picks for the pack's size.
func damageOnlyPack(t *testing.T, vault string, where func(size int64) int64) {
	t.Helper()
	packs, _ := filepath.Glob(filepath.Join(vault, "packs", "*", "*.pack"))
	if len(packs) != 1 {
		t.Fatalf("packs: %v", packs)
	}
	f, err := os.OpenFile(packs[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("DAMAGE"), where(st.Size())); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a bytes.Buffer safe for a process writing while the test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
