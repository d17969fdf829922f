package integration

import (
	"bytes"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startLibvirtd runs a libvirtd (and the virtlogd its QEMU driver logs
// through, unless one runs) for the test, with its socket in a folder
// of the test's, and returns the socket. The QEMU driver itself keeps the
// machine-wide state of a privileged libvirtd: no other may run.
func startLibvirtd(t *testing.T) string {
	t.Helper()
	needTool(t, "libvirtd", "virtlogd", "virsh", "qemu-system-x86_64", "qemu-img")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the libvirt test runs as root (a privileged libvirtd)")
		}
		t.Skip("the libvirt test runs as root (a privileged libvirtd)")
	}
	// Where no udev gave /dev/kvm to group kvm, libvirt probes QEMU
	// anew at every domain start, a minute each.
	if st, err := os.Stat("/dev/kvm"); err == nil && !kvmForGroupKVM(st) {
		msg := "/dev/kvm is not open to group kvm as udev leaves it: run integration/install-deps.sh"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	start := func(name string, args ...string) *exec.Cmd {
		var out bytes.Buffer
		cmd := exec.Command(name, args...)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		t.Cleanup(func() {
			cmd.Process.Signal(os.Interrupt)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
			}
			if t.Failed() {
				t.Logf("%s:\n%s", name, out.String())
			}
		})
		return cmd
	}
	if c, err := net.Dial("unix", "/run/libvirt/virtlogd-sock"); err == nil {
		c.Close()
	} else {
		start("virtlogd")
	}
	conf := filepath.Join(dir, "libvirtd.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("unix_sock_dir = %q\n", dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	start("libvirtd", "-f", conf, "-p", filepath.Join(dir, "libvirtd.pid"))
	sock := filepath.Join(dir, "libvirt-sock")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if out, err := exec.Command("virsh", "-c", "qemu:///system?socket="+sock, "version").CombinedOutput(); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("libvirtd did not come up: %v\n%s", err, out)
		}
	}
	return sock
}

// kvmForGroupKVM reports whether the device is read-write for group kvm.
func kvmForGroupKVM(st os.FileInfo) bool {
	g, err := user.LookupGroup("kvm")
	sys, ok := st.Sys().(*syscall.Stat_t)
	return err == nil && ok && strconv.Itoa(int(sys.Gid)) == g.Gid && st.Mode().Perm()&0o060 == 0o060
}

// libvirtVM is a transient domain with no guest OS (its firmware finds
// nothing to boot and waits) whose one disk, vda, a qcow2 image, the test
// writes to through QEMU's monitor as a guest would.
type libvirtVM struct {
	t    *testing.T
	uri  string // virsh's connection
	name string
	img  string
	want []byte
	rng  *rand.Rand
}

func (vm *libvirtVM) virsh(args ...string) string {
	vm.t.Helper()
	out, err := exec.Command("virsh", append([]string{"-c", vm.uri}, args...)...).CombinedOutput()
	if err != nil {
		vm.t.Fatalf("virsh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newLibvirtVM(t *testing.T, sock string) *libvirtVM {
	// QEMU runs as libvirt's qemu user: the image's folder must be
	// open to it (libvirt gives it the image itself).
	dir, err := os.MkdirTemp("", "cairn-libvirt-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	vm := &libvirtVM{t: t, uri: "qemu:///system?socket=" + sock, name: fmt.Sprintf("cairn-test-%d", os.Getpid()),
		img: filepath.Join(dir, "vda.qcow2"), want: make([]byte, 32<<20), rng: rand.New(rand.NewSource(23))}
	for _, r := range [][2]int{{0, 2 << 20}, {5 << 20, 3 << 20}, {20 << 20, 4 << 20}} {
		vm.rng.Read(vm.want[r[0] : r[0]+r[1]])
	}
	raw := filepath.Join(dir, "vda.raw")
	if err := os.WriteFile(raw, vm.want, 0o644); err != nil {
		t.Fatal(err)
	}
	sh(t, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, vm.img)
	os.Remove(raw)
	xmlPath := filepath.Join(dir, "dom.xml")
	domXML := fmt.Sprintf(`<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='%s'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>`, vm.name, vm.img)
	if err := os.WriteFile(xmlPath, []byte(domXML), 0o644); err != nil {
		t.Fatal(err)
	}
	vm.virsh("create", xmlPath)
	t.Cleanup(func() { exec.Command("virsh", "-c", vm.uri, "destroy", vm.name).Run() })
	return vm
}

// write has the "guest" write n random bytes at off through its disk
// device (so a running backup job sees the write as the guest's).
func (vm *libvirtVM) write(off, n int) {
	vm.t.Helper()
	vm.rng.Read(vm.want[off : off+n])
	f := filepath.Join(filepath.Dir(vm.img), "w.bin")
	if err := os.WriteFile(f, vm.want[off:off+n], 0o644); err != nil {
		vm.t.Fatal(err)
	}
	out := vm.virsh("qemu-monitor-command", vm.name, "--hmp",
		fmt.Sprintf(`qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend "write -s %s %d %d"`, f, off, n))
	if strings.Contains(out, "rror") {
		vm.t.Fatalf("qemu-io in the monitor: %s", out)
	}
}

// checkpoints lists the domain's checkpoints.
func (vm *libvirtVM) checkpoints() []string {
	return strings.Fields(vm.virsh("checkpoint-list", vm.name, "--name"))
}

// cairn backup --libvirt against a real libvirtd: a domain without a
// guest agent cannot be frozen, which stops the backup (nothing left
// behind: no point, job or checkpoint) unless --hook-failure continue
// makes the point crash-consistent; the first point is a full read that
// starts a checkpoint; the next reads only what the guest wrote since,
// from libvirt's bitmap of that checkpoint, and restores identical to
// the disk; cairn keeps one checkpoint of its own.
func TestLibvirtBackup(t *testing.T) {
	t.Parallel() // mostly waits on libvirtd and QEMU: overlaps the other long tests
	t0 := time.Now()
	sock := startLibvirtd(t)
	vm := newLibvirtVM(t, sock)
	t.Logf("libvirtd and the domain up in %v", time.Since(t0))
	vault := filepath.Join(t.TempDir(), "vault")
	mustCairn(t, vault, "init")
	const bs = 256 << 10
	backup := func(extra ...string) result {
		return cairn(t, vault, append([]string{"backup", "--libvirt", vm.name, "--name", "vm1", "--libvirt-socket", sock, "--json"}, extra...)...)
	}

	r := backup()
	if r.code == 0 || !strings.Contains(r.stderr, "guest agent") || !strings.Contains(r.stderr, "--hook-failure continue") {
		t.Fatalf("backup of a domain without an agent: exit %d\n%s", r.code, r.stderr)
	}
	if cps := vm.checkpoints(); len(cps) != 0 {
		t.Errorf("checkpoints after a refused backup: %v", cps)
	}
	if out := mustCairn(t, vault, "points", "--json"); strings.Contains(out, "vm1@") {
		t.Errorf("a refused backup left a point: %s", out)
	}

	r = backup("--hook-failure", "continue")
	if r.code != 0 {
		t.Fatalf("backup: exit %d\n%s", r.code, r.stderr)
	}
	var p1 struct {
		nbdPoint
		Consistency string `json:"consistency"`
	}
	mustJSON(t, r.stdout, &p1)
	d := p1.Disks[0]
	if len(p1.Disks) != 1 || d.Name != "vda" || d.ReadMode != "full" || !strings.HasPrefix(d.Checkpoint, "cairn-") ||
		p1.Consistency != "crash" || d.Read != dataBytes(vm.want, bs, nil) {
		t.Fatalf("first point: %+v (consistency %s), want a full read of %d bytes", p1.nbdPoint, p1.Consistency, dataBytes(vm.want, bs, nil))
	}
	if cps := vm.checkpoints(); len(cps) != 1 || cps[0] != d.Checkpoint {
		t.Errorf("checkpoints %v, want [%s]", cps, d.Checkpoint)
	}

	vm.write(1<<20, 64<<10)
	vm.write(10<<20, 64<<10)
	vm.write(21<<20+512<<10, 128<<10)
	r = backup("--hook-failure", "continue")
	if r.code != 0 {
		t.Fatalf("second backup: exit %d\n%s", r.code, r.stderr)
	}
	var p2 nbdPoint
	mustJSON(t, r.stdout, &p2)
	d2 := p2.Disks[0]
	if d2.ReadMode != "bitmap" || d2.Bitmap != d.Checkpoint || d2.Read != 3*bs || d2.Checkpoint == d.Checkpoint {
		t.Fatalf("second point: %+v, want %d bytes read from bitmap %s", d2, 3*bs, d.Checkpoint)
	}
	if cps := vm.checkpoints(); len(cps) != 1 || cps[0] != d2.Checkpoint {
		t.Errorf("checkpoints %v, want only the latest point's, %s", cps, d2.Checkpoint)
	}
	out, got := restored(t, vault, p2.Point)
	if !bytes.Equal(got, vm.want) {
		t.Fatal("the bitmap point restores differently from the disk")
	}
	vm.virsh("destroy", vm.name)
	sh(t, "qemu-img", "compare", "-f", "raw", "-F", "qcow2", out, vm.img)
	t.Logf("done at %v", time.Since(t0))
}
