package volume

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/fs/guest"
)

// needTool skips when a fixture tool is missing, but fails under CI.
func needTool(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not installed", n)
			}
			t.Skipf("%s is not installed", n)
		}
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// image builds an ext filesystem of the given mkfs flavour from a small
// tree with symlinks, and returns it opened.
func image(t *testing.T, mkfs string) (*os.File, int64) {
	t.Helper()
	needTool(t, mkfs)
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	for _, d := range []string{"etc", "usr/lib/x", "a/b"} {
		os.MkdirAll(filepath.Join(tree, d), 0o755)
	}
	os.WriteFile(filepath.Join(tree, "etc/hostname"), []byte("web01\n"), 0o644)
	os.WriteFile(filepath.Join(tree, "usr/lib/x/f"), []byte("deep\n"), 0o644)
	os.Symlink("usr/lib", filepath.Join(tree, "lib"))
	os.Symlink("/etc/hostname", filepath.Join(tree, "a/b/abs"))
	os.Symlink("../../etc", filepath.Join(tree, "a/b/up"))
	os.Symlink("loop2", filepath.Join(tree, "loop1"))
	os.Symlink("loop1", filepath.Join(tree, "loop2"))
	img := filepath.Join(dir, "fs.img")
	run(t, mkfs, "-q", "-F", "-d", tree, img, "8M")
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, _ := f.Stat()
	return f, st.Size()
}

func TestBareAndWalk(t *testing.T) {
	for mkfs, want := range map[string]string{"mkfs.ext2": "ext2", "mkfs.ext3": "ext3", "mkfs.ext4": "ext4"} {
		t.Run(want, func(t *testing.T) {
			f, size := image(t, mkfs)
			d, err := Open(f, size)
			if err != nil {
				t.Fatal(err)
			}
			if !d.Bare || len(d.Volumes) != 1 || d.Volumes[0].Type() != want {
				t.Fatalf("bare %v, %d volumes, type %q", d.Bare, len(d.Volumes), d.Volumes[0].Type())
			}
			read := func(p string) (string, error) {
				_, fsys, ino, err := d.Resolve(p, true)
				if err != nil {
					return "", err
				}
				b := make([]byte, 64)
				n, _ := fsys.ReadAt(ino, b, 0)
				return string(b[:n]), nil
			}
			for p, content := range map[string]string{
				"etc/hostname": "web01\n", "/etc//hostname": "web01\n", "lib/x/f": "deep\n",
				"a/b/abs": "web01\n", "a/b/up/hostname": "web01\n", "a/../../../etc/hostname": "web01\n",
			} {
				if got, err := read(p); err != nil || got != content {
					t.Errorf("%s: %q, %v", p, got, err)
				}
			}
			for p, want := range map[string]error{"nope": guest.ErrNotFound, "etc/hostname/x": guest.ErrNotDir,
				"loop1": ErrLoop, "lib/x/g": guest.ErrNotFound} {
				if _, err := read(p); !errors.Is(err, want) {
					t.Errorf("%s: %v, want %v", p, err, want)
				}
			}
			// Without follow, the last link is the link itself.
			_, fsys, ino, err := d.Resolve("lib", false)
			if err != nil {
				t.Fatal(err)
			}
			if target, err := fsys.Readlink(ino); err != nil || target != "usr/lib" {
				t.Errorf("readlink lib: %q, %v", target, err)
			}
		})
	}
}

func TestPartitioned(t *testing.T) {
	needTool(t, "sgdisk", "mkfs.vfat")
	f, _ := image(t, "mkfs.ext4")
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	run(t, "truncate", "-s", "40M", disk)
	run(t, "sgdisk", "-n1:1M:+8M", "-n2:0:+16M", "-t2:ef00", "-n3:0:0", "-t3:8200", disk)
	run(t, "dd", "if="+f.Name(), "of="+disk, "bs=1M", "seek=1", "conv=notrunc", "status=none")
	fat := filepath.Join(dir, "fat.img")
	run(t, "mkfs.vfat", "-C", fat, "16384")
	run(t, "dd", "if="+fat, "of="+disk, "bs=1M", "seek=9", "conv=notrunc", "status=none")
	df, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer df.Close()
	d, err := Open(df, 40<<20)
	if err != nil {
		t.Fatal(err)
	}
	if d.Bare || d.Table.Kind != "gpt" || len(d.Volumes) != 3 {
		t.Fatalf("bare %v kind %q volumes %d", d.Bare, d.Table.Kind, len(d.Volumes))
	}
	types := ""
	for _, v := range d.Volumes {
		types += v.Name + "=" + v.Type() + " "
	}
	if types != "part1=ext4 part2=FAT16 part3= " {
		t.Errorf("types: %s", types)
	}
	if _, err := d.Volume("part3").FS(); !errors.Is(err, ErrNoFilesystem) {
		t.Errorf("swap: %v", err)
	}
	if _, _, _, err := d.Resolve("part1/etc/hostname", true); err != nil {
		t.Error(err)
	}
	if _, _, _, err := d.Resolve("part7/x", true); !errors.Is(err, ErrNoVolume) {
		t.Errorf("part7: %v", err)
	}
	if v, rest := d.Split("/part1//etc/../etc/hostname"); v != "part1" || rest != "etc/hostname" {
		t.Errorf("split: %q %q", v, rest)
	}
}

func TestBlank(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "blank")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(4 << 20)
	d, err := Open(f, 4<<20)
	if err != nil || d.Bare || len(d.Volumes) != 0 {
		t.Fatalf("blank disk: %+v, %v", d, err)
	}
	if _, _, _, err := d.Resolve("x", false); !errors.Is(err, ErrNoVolume) {
		t.Errorf("resolve on blank disk: %v", err)
	}
}

// A filesystem whose journal needs recovery but cannot be replayed opens,
// with a warning handed out once for the mount to log.
func TestJournalWarningOnce(t *testing.T) {
	needTool(t, "debugfs")
	f, size := image(t, "mkfs.ext4")
	img := f.Name()
	blk := filepath.Join(t.TempDir(), "blk")
	os.WriteFile(blk, make([]byte, 4096), 0o644)
	script := filepath.Join(t.TempDir(), "cmds")
	os.WriteFile(script, []byte("jo\njw -b 100 "+blk+"\njc\n"), 0o644)
	run(t, "debugfs", "-w", "-f", script, img)
	d, err := Open(f, size)
	if err != nil {
		t.Fatal(err)
	}
	if w := d.Volumes[0].TakeWarning(); w != nil {
		t.Fatalf("a replayable journal warns: %v", w)
	}
	// Set an unknown feature in the journal superblock (inode 8, block 0).
	out, err := exec.Command("debugfs", "-R", "bmap <8> 0", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	var jblk int64
	fmt.Sscan(string(out), &jblk)
	bsOut, _ := exec.Command("dumpe2fs", "-h", img).Output()
	bs := int64(1024)
	for _, line := range strings.Split(string(bsOut), "\n") {
		if strings.HasPrefix(line, "Block size:") {
			fmt.Sscan(strings.TrimPrefix(line, "Block size:"), &bs)
		}
	}
	w, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteAt([]byte{0x80, 0, 0, 0}, jblk*bs+0x28)
	w.Close()
	d, err = Open(f, size)
	if err != nil {
		t.Fatal(err)
	}
	v := d.Volumes[0]
	if _, err := v.FS(); err != nil {
		t.Fatalf("open with an unreadable journal: %v", err)
	}
	if w := v.TakeWarning(); w == nil || !strings.Contains(w.Error(), "journal not replayed") {
		t.Errorf("first warning: %v", w)
	}
	if w := v.TakeWarning(); w != nil {
		t.Errorf("second warning: %v", w)
	}
}

// An NTFS volume, bare and as a GPT partition, with a file placed by
// ntfscp (no mount), is found and read.
func TestNTFS(t *testing.T) {
	needTool(t, "mkntfs", "ntfscp", "sgdisk")
	dir := t.TempDir()
	img := filepath.Join(dir, "ntfs.img")
	run(t, "truncate", "-s", "16M", img)
	run(t, "mkntfs", "-q", "-F", "-f", img)
	src := filepath.Join(dir, "hostname")
	os.WriteFile(src, []byte("win01\n"), 0o644)
	run(t, "ntfscp", "-q", img, src, "hostname")
	disk := filepath.Join(dir, "disk.img")
	run(t, "truncate", "-s", "20M", disk)
	run(t, "sgdisk", "-n1:1M:+16M", "-t1:0700", disk)
	run(t, "dd", "if="+img, "of="+disk, "bs=1M", "seek=1", "conv=notrunc", "status=none")
	for _, c := range []struct{ path, prefix string }{{img, ""}, {disk, "part1/"}} {
		f, err := os.Open(c.path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		st, _ := f.Stat()
		d, err := Open(f, st.Size())
		if err != nil {
			t.Fatal(err)
		}
		v := d.Volumes[0]
		if v.Type() != "ntfs" || d.Bare != (c.prefix == "") {
			t.Fatalf("%s: type %q, bare %v", c.path, v.Type(), d.Bare)
		}
		_, fsys, ino, err := d.Resolve(c.prefix+"hostname", true)
		if err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		b := make([]byte, 64)
		if n, _ := fsys.ReadAt(ino, b, 0); string(b[:n]) != "win01\n" {
			t.Errorf("%s: hostname reads %q", c.path, b[:n])
		}
		if _, _, _, err := d.Resolve(c.prefix+"$MFT", true); !errors.Is(err, guest.ErrNotFound) {
			t.Errorf("%s: $MFT: %v", c.path, err)
		}
	}
}
