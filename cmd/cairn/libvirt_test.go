package main

import (
	"encoding/xml"
	"strings"
	"testing"
)

const testDomainXML = `<domain type='kvm' id='3'>
  <name>web01</name>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/web01.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw'/>
      <source dev='/dev/vg0/web01-data'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/srv/install.iso'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
    </disk>
    <disk type='file' device='disk'>
      <source file='/srv/shared.img'/>
      <target dev='vdc' bus='virtio'/>
      <readonly/>
    </disk>
  </devices>
  <seclabel type='dynamic' model='apparmor' relabel='yes'><label>libvirt-1234</label></seclabel>
  <seclabel type='dynamic' model='dac' relabel='yes'><label>+64055:+107</label></seclabel>
</domain>`

// The writable disks of a domain are backed up, named after their
// targets, recorded by their storage; CD-ROMs and read-only disks are
// not.
func TestDomainDisks(t *testing.T) {
	disks, err := domainDisks(testDomainXML)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range disks {
		got = append(got, d.Target.Dev+"="+d.where())
	}
	if want := "vda=/var/lib/libvirt/images/web01.qcow2 vdb=/dev/vg0/web01-data"; strings.Join(got, " ") != want {
		t.Errorf("disks %v, want %s", got, want)
	}
	if _, err := domainDisks(`<domain><devices/></domain>`); err == nil {
		t.Error("a domain without disks was accepted")
	}
	if _, err := domainDisks(`<domain`); err == nil {
		t.Error("bad XML was accepted")
	}
	if uid, gid, ok := qemuOwner(testDomainXML); !ok || uid != 64055 || gid != 107 {
		t.Errorf("qemu owner %d:%d %v, want 64055:107", uid, gid, ok)
	}
	if _, _, ok := qemuOwner(`<domain/>`); ok {
		t.Error("an owner from a domain without a DAC label")
	}
}

// The pull-mode backup asks for each disk by its target, exports the
// changes since the base as the bitmap named after it, and keeps the
// frozen view in a scratch image of cairn's folder.
func TestBackupXML(t *testing.T) {
	bx := backupXML{Mode: "pull", Incremental: "cairn-1"}
	bx.Server.Transport, bx.Server.Socket = "unix", "/tmp/x/nbd.sock"
	d := backupDiskXML{Name: "vda", Backup: "yes", Type: "file", ExportName: "vda", ExportBitmap: "cairn-1"}
	d.Scratch.File = "/tmp/x/vda.scratch.qcow2"
	bx.Disks = append(bx.Disks, d)
	b, err := xml.Marshal(bx)
	if err != nil {
		t.Fatal(err)
	}
	want := `<domainbackup mode="pull"><incremental>cairn-1</incremental><server transport="unix" socket="/tmp/x/nbd.sock"></server>` +
		`<disks><disk name="vda" backup="yes" type="file" exportname="vda" exportbitmap="cairn-1"><scratch file="/tmp/x/vda.scratch.qcow2"></scratch></disk></disks></domainbackup>`
	if string(b) != want {
		t.Errorf("backup XML\n got %s\nwant %s", b, want)
	}
	full := backupXML{Mode: "pull"}
	if b, _ := xml.Marshal(full); strings.Contains(string(b), "incremental") {
		t.Errorf("a full backup's XML names an incremental base: %s", b)
	}
}

func TestLibvirtRequestCheck(t *testing.T) {
	for _, c := range []struct {
		r  backupRequest
		ok bool
	}{
		{backupRequest{Name: "vm1", Libvirt: &libvirtRequest{Domain: "vm1"}}, true},
		{backupRequest{Name: "vm1", Libvirt: &libvirtRequest{Domain: "vm1", HookFailure: "continue", Socket: "/run/l.sock"}}, true},
		{backupRequest{Name: "vm1", Libvirt: &libvirtRequest{Domain: ""}}, false},
		{backupRequest{Name: "vm1", Libvirt: &libvirtRequest{Domain: "vm1", HookFailure: "ignore"}}, false},
		{backupRequest{Name: "vm1", Libvirt: &libvirtRequest{Domain: "vm1", Socket: "l.sock"}}, false},
		{backupRequest{Name: "vm1", Libvirt: &libvirtRequest{Domain: "vm1"}, Disks: []backupDisk{{Name: "vda", Path: "/x"}}}, false},
	} {
		if err := c.r.check(); (err == nil) != c.ok {
			t.Errorf("%+v: check %v", c.r.Libvirt, err)
		}
	}
}
