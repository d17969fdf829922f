package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// protoTree makes a small tree: a file, a setuid file, a hard link, a
// symlink, a subdirectory.
func protoTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "a"), []byte("alpha\n"), 0o644))
	must(os.Mkdir(filepath.Join(dir, "sub"), 0o750))
	must(os.WriteFile(filepath.Join(dir, "sub", "b"), []byte("beta\n"), 0o600))
	must(os.Chmod(filepath.Join(dir, "sub", "b"), os.ModeSetuid|0o755))
	must(os.Link(filepath.Join(dir, "a"), filepath.Join(dir, "sub", "c")))
	must(os.Symlink("../a", filepath.Join(dir, "sub", "l")))
	must(os.Chmod(dir, 0o755))
	return dir
}

func TestXFSProtoText(t *testing.T) {
	dir := protoTree(t)
	var b strings.Builder
	copies, err := xfsProto(&b, dir)
	if err != nil {
		t.Fatal(err)
	}
	if copies != 1 {
		t.Errorf("copies = %d, want 1 (sub/c is a second name of a)", copies)
	}
	u, g := os.Getuid(), os.Getgid()
	id := func(s string) string {
		return strings.NewReplacer("U", strconv.Itoa(u), "G", strconv.Itoa(g)).Replace(s)
	}
	want := id("cairn-bench\n0 0\n" +
		"d--755 U G\n" +
		"a ---644 U G " + dir + "/a\n" +
		"sub d--750 U G\n" +
		"b -u-755 U G " + dir + "/sub/b\n" +
		"c ---644 U G " + dir + "/sub/c\n" +
		"l l--777 U G ../a\n" +
		"$\n" +
		"$\n")
	if b.String() != want {
		t.Errorf("protofile:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestXFSProtoRefuses(t *testing.T) {
	for name, mk := range map[string]func(dir string) error{
		"space":  func(dir string) error { return os.WriteFile(filepath.Join(dir, "a b"), nil, 0o644) },
		"colon":  func(dir string) error { return os.WriteFile(filepath.Join(dir, ":x"), nil, 0o644) },
		"dollar": func(dir string) error { return os.WriteFile(filepath.Join(dir, "$"), nil, 0o644) },
		"target": func(dir string) error { return os.Symlink("x y", filepath.Join(dir, "l")) },
		"sticky": func(dir string) error {
			if err := os.Mkdir(filepath.Join(dir, "tmp"), 0o777); err != nil {
				return err
			}
			return os.Chmod(filepath.Join(dir, "tmp"), os.ModeSticky|0o777)
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := mk(dir); err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			if _, err := xfsProto(&b, dir); err == nil {
				t.Errorf("no error; protofile:\n%s", b.String())
			}
		})
	}
}

// TestXFSProtoMkfs builds an image from the protofile with mkfs.xfs and
// reads it back with xfs_db.
func TestXFSProtoMkfs(t *testing.T) {
	for _, tool := range []string{"mkfs.xfs", "xfs_db"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s missing: %v", tool, err)
			}
			t.Skipf("%s missing: %v", tool, err)
		}
	}
	dir := protoTree(t)
	var b strings.Builder
	if _, err := xfsProto(&b, dir); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	proto := filepath.Join(tmp, "proto")
	if err := os.WriteFile(proto, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(tmp, "xfs.img")
	cmd := exec.Command("mkfs.xfs", "-q", "-f", "-p", proto, "-d", "file,name="+img+",size=64m")
	// mkfs.xfs refuses volumes under 300 MB unless it runs under fstests,
	// which it recognises by these variables.
	cmd.Env = append(os.Environ(), "TEST_DIR=1", "TEST_DEV=1", "QA_CHECK_FS=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs: %v\n%s", err, out)
	}
	out, err := exec.Command("xfs_db", "-r", "-c", "path /sub", "-c", "ls", "-c", "path /sub/b", "-c", "print core.mode core.size", img).CombinedOutput()
	if err != nil {
		t.Fatalf("xfs_db: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []string{" b (good)", " c (good)", " l (good)", "core.mode = 0104755", "core.size = 5"} {
		if !strings.Contains(s, want) {
			t.Errorf("xfs_db output lacks %q:\n%s", want, s)
		}
	}
}
