package volume

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/image/partition"
)

func runInput(t *testing.T, input, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(input)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func openDisk(t *testing.T, p string) *Disk {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	st, _ := f.Stat()
	d, err := Open(f, st.Size())
	if err != nil {
		t.Fatalf("open %s: %v", filepath.Base(p), err)
	}
	return d
}

func mustRead(t *testing.T, d *Disk, p, want string) {
	t.Helper()
	_, fsys, ino, err := d.Resolve(p, true)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	b := make([]byte, 64)
	n, _ := fsys.ReadAt(ino, b, 0)
	if string(b[:n]) != want {
		t.Fatalf("%s: %q, want %q", p, b[:n], want)
	}
}

// blkid says what a file holds: TYPE and UUID.
func blkid(t *testing.T, p string) (typ, uuid string) {
	t.Helper()
	out, err := exec.Command("blkid", "-p", "-o", "export", p).Output()
	if err != nil {
		t.Fatalf("blkid %s: %v", p, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && k == "TYPE" {
			typ = v
		} else if ok && k == "UUID" {
			uuid = v
		}
	}
	return typ, uuid
}

// Sector 0 holds boot code and the MBR signature but no partition: the
// filesystem on the whole disk is what Linux mounts and blkid names, so
// it is shown as a bare filesystem.
func TestBootSectorWithoutPartitions(t *testing.T) {
	needTool(t, "sfdisk", "blkid", "mkfs.vfat")
	for _, kind := range []string{"ext4", "fat"} {
		t.Run(kind, func(t *testing.T) {
			var p string
			if kind == "ext4" {
				f, _ := image(t, "mkfs.ext4")
				p = f.Name()
			} else {
				p = filepath.Join(t.TempDir(), "fat.img")
				run(t, "mkfs.vfat", "-C", p, "8192")
			}
			// An empty DOS label, then boot code around it, as a boot
			// loader installed on a superfloppy leaves them.
			runInput(t, "label: dos\n", "sfdisk", "-q", "--wipe", "never", p)
			if kind == "ext4" {
				code := make([]byte, 440)
				rand.New(rand.NewSource(1)).Read(code)
				code[0], code[1], code[2] = 0xEB, 0x63, 0x90
				f, _ := os.OpenFile(p, os.O_RDWR, 0)
				f.WriteAt(code, 0)
				f.Close()
			}
			typ, _ := blkid(t, p)
			d := openDisk(t, p)
			if !d.Bare || len(d.Volumes) != 1 || d.Volumes[0].Name != "" {
				t.Fatalf("blkid says %s; we: bare %v, table %q, %d volumes", typ, d.Bare, d.Table.Kind, len(d.Volumes))
			}
			if kind == "ext4" {
				if typ != "ext4" || d.Volumes[0].Type() != "ext4" {
					t.Errorf("type %q, blkid %q", d.Volumes[0].Type(), typ)
				}
				mustRead(t, d, "etc/hostname", "web01\n")
			} else if typ != "vfat" || !strings.HasPrefix(d.Volumes[0].Type(), "FAT") {
				t.Errorf("type %q, blkid %q", d.Volumes[0].Type(), typ)
			}
		})
	}
}

// A protective MBR without a usable GPT: Linux sees no partitions and
// mounts the whole disk; we show the whole disk's filesystem, or nothing,
// and say why in TableErr, instead of failing the disk.
func TestProtectiveMBRWithoutGPT(t *testing.T) {
	needTool(t, "sfdisk", "sgdisk")
	f, size := image(t, "mkfs.ext4")
	runInput(t, fmt.Sprintf("label: dos\nstart=1, size=%d, type=ee\n", size/512-1), "sfdisk", "-q", "--wipe", "never", f.Name())
	d := openDisk(t, f.Name())
	if !errors.Is(d.TableErr, partition.ErrCorrupt) || !strings.Contains(d.TableErr.Error(), "protective MBR") ||
		!d.Bare || d.Volumes[0].Type() != "ext4" {
		t.Fatalf("table err %v, bare %v, %d volumes", d.TableErr, d.Bare, len(d.Volumes))
	}
	mustRead(t, d, "etc/hostname", "web01\n")

	// A GPT disk whose both headers are damaged: no partitions, no error.
	dir := t.TempDir()
	p := filepath.Join(dir, "gpt.img")
	run(t, "truncate", "-s", "8M", p)
	run(t, "sgdisk", "-n1:1M:+2M", p)
	w, _ := os.OpenFile(p, os.O_RDWR, 0)
	w.WriteAt([]byte("garbage!"), 512+24)
	w.WriteAt([]byte("garbage!"), 8<<20-512+24)
	w.Close()
	d = openDisk(t, p)
	if !errors.Is(d.TableErr, partition.ErrCorrupt) || d.Bare || len(d.Volumes) != 0 {
		t.Fatalf("table err %v, bare %v, %d volumes", d.TableErr, d.Bare, len(d.Volumes))
	}
	if _, _, _, err := d.Resolve("part1/x", false); !errors.Is(err, ErrNoVolume) {
		t.Errorf("resolve: %v", err)
	}
}

// Swap, LUKS1, LUKS2 and btrfs partitions, and a whole-disk swap, are
// listed as what they are with their UUID, the same blkid reads.
func TestUnsupportedVolumes(t *testing.T) {
	needTool(t, "mkswap", "cryptsetup", "mkfs.btrfs", "sgdisk", "blkid")
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	os.WriteFile(key, []byte("secret"), 0o600)
	mk := map[string]func(p string){
		"swap": func(p string) { run(t, "mkswap", "-q", p) },
		"luks1": func(p string) {
			run(t, "cryptsetup", "luksFormat", "-q", "--type", "luks1", "--pbkdf-force-iterations", "1000", "--key-file", key, p)
		},
		"luks2": func(p string) {
			run(t, "cryptsetup", "luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2",
				"--pbkdf-force-iterations", "1000", "--key-file", key, p)
		},
		"btrfs": func(p string) { run(t, "mkfs.btrfs", "-q", p) },
	}
	sizes := map[string]int{"swap": 8, "luks1": 4, "luks2": 20, "btrfs": 120}
	order := []string{"swap", "luks1", "luks2", "btrfs"}
	disk := filepath.Join(dir, "disk.img")
	run(t, "truncate", "-s", "160M", disk)
	args := []string{}
	for i, k := range order {
		args = append(args, fmt.Sprintf("-n%d:0:+%dM", i+1, sizes[k]))
	}
	run(t, "sgdisk", append(args, disk)...)
	d := openDisk(t, disk)
	want := map[string]string{}
	for i, k := range order {
		p := filepath.Join(dir, k+".img")
		run(t, "truncate", "-s", fmt.Sprintf("%dM", sizes[k]), p)
		mk[k](p)
		typ, uuid := blkid(t, p)
		label := map[string]string{"swap": "swap", "luks1": "LUKS1", "luks2": "LUKS2", "btrfs": "btrfs"}[k]
		if (typ != "swap" && typ != "crypto_LUKS" && typ != "btrfs") || uuid == "" {
			t.Fatalf("blkid %s: %s %s", k, typ, uuid)
		}
		want[fmt.Sprint("part", i+1)] = label + " (UUID " + uuid + ")"
		run(t, "dd", "if="+p, "of="+disk, "bs=1M", fmt.Sprintf("seek=%d", d.Volumes[i].Start>>20), "conv=notrunc,sparse", "status=none")
		if k == "swap" {
			whole := openDisk(t, p)
			if whole.Bare || len(whole.Volumes) != 0 || whole.Content != want["part1"] {
				t.Errorf("whole-disk swap: bare %v, content %q, want %q", whole.Bare, whole.Content, want["part1"])
			}
		}
	}
	d = openDisk(t, disk)
	for _, v := range d.Volumes {
		_, err := v.FS()
		if !errors.Is(err, ErrNoFilesystem) || !strings.Contains(err.Error(), want[v.Name]) || v.Content() != want[v.Name] {
			t.Errorf("%s: content %q, err %v; want %q", v.Name, v.Content(), err, want[v.Name])
		}
		w := v.TakeWarning()
		if w == nil || !strings.Contains(w.Error(), want[v.Name]) || v.TakeWarning() != nil {
			t.Errorf("%s: warning %v", v.Name, w)
		}
		if !regexp.MustCompile(`UUID [0-9a-f-]{36}\)$`).MatchString(v.Content()) {
			t.Errorf("%s: %q", v.Name, v.Content())
		}
	}
}
