package main

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"

	"github.com/cairn-backup/cairn/image/nbd"
	"github.com/cairn-backup/cairn/snapshot"
	"github.com/cairn-backup/cairn/snapshot/policy"
)

// A libvirt backup (cairn backup --libvirt DOMAIN) reads a running
// domain's disks through libvirt's pull-mode backup API:
//
//  1. freeze the guest's filesystems through its agent (a failure stops
//     the backup, or with --hook-failure continue gives a crash-consistent
//     point);
//  2. begin a pull-mode backup with a new checkpoint: libvirt exports a
//     frozen view of each disk over NBD on a unix socket, and, when the
//     latest point's checkpoint still exists, the changes since it as the
//     dirty bitmap named after it;
//  3. thaw;
//  4. read the disks from the export (bitmap=OLD&checkpoint=NEW: the
//     snapshot package decides whether the bitmap may be trusted);
//  5. end the backup job, and delete the checkpoint that is no longer
//     needed: the old one after a commit, the new one after a failure
//     (libvirt merges a deleted checkpoint's changes into its parent's).

// libvirtRequest is a libvirt backup's part of a backup job's params.
type libvirtRequest struct {
	Domain string `json:"domain"`
	// Socket is libvirtd's (or virtqemud's) socket.
	Socket string `json:"socket,omitempty"`
	// HookFailure: "continue" backs up without the freeze when it
	// fails (a crash-consistent point); "abort" (default) stops.
	HookFailure string `json:"hook_failure,omitempty"`
	// ScratchDir holds the export's socket and the scratch images
	// libvirt keeps the frozen view in while the guest writes.
	ScratchDir string `json:"scratch_dir,omitempty"`
}

const (
	defaultLibvirtSocket = "/var/run/libvirt/libvirt-sock"
	// checkpointPrefix marks the checkpoints cairn makes, the only ones
	// it deletes.
	checkpointPrefix = "cairn-"
)

func (r *libvirtRequest) check() error {
	if r.Domain == "" {
		return usagef("--libvirt DOMAIN: the domain's name is required")
	}
	if r.HookFailure != "" {
		if _, err := policy.ParseOnFailure(r.HookFailure); err != nil {
			return usagef("--hook-failure: %v", err)
		}
	}
	for _, p := range []string{r.Socket, r.ScratchDir} {
		if p != "" && !filepath.IsAbs(p) {
			return usagef("%s: the path must be absolute", p)
		}
	}
	return nil
}

// domainDisk is a disk of a domain's XML.
type domainDisk struct {
	Type   string `xml:"type,attr"`
	Device string `xml:"device,attr"`
	Source struct {
		File string `xml:"file,attr"`
		Dev  string `xml:"dev,attr"`
		Name string `xml:"name,attr"`
	} `xml:"source"`
	Target struct {
		Dev string `xml:"dev,attr"`
	} `xml:"target"`
	ReadOnly *struct{} `xml:"readonly"`
}

// where names the disk's storage, for the point's record.
func (d domainDisk) where() string {
	for _, s := range []string{d.Source.File, d.Source.Dev, d.Source.Name} {
		if s != "" {
			return s
		}
	}
	return ""
}

// qemuOwner is the user and group QEMU runs as for a running domain: the
// DAC label of its live XML ("+UID:+GID"), or ok false when it has none.
func qemuOwner(domXML string) (uid, gid int, ok bool) {
	var dom struct {
		Labels []struct {
			Model string `xml:"model,attr"`
			Label string `xml:"label"`
		} `xml:"seclabel"`
	}
	if xml.Unmarshal([]byte(domXML), &dom) != nil {
		return 0, 0, false
	}
	for _, l := range dom.Labels {
		if l.Model != "dac" {
			continue
		}
		u, g, found := strings.Cut(l.Label, ":")
		a, err1 := strconv.Atoi(strings.TrimPrefix(u, "+"))
		b, err2 := strconv.Atoi(strings.TrimPrefix(g, "+"))
		if found && err1 == nil && err2 == nil {
			return a, b, true
		}
	}
	return 0, 0, false
}

// domainDisks lists the writable disks of a domain's XML (no CD-ROMs,
// floppies or read-only disks: libvirt backs up none of those).
func domainDisks(domXML string) ([]domainDisk, error) {
	var dom struct {
		Disks []domainDisk `xml:"devices>disk"`
	}
	if err := xml.Unmarshal([]byte(domXML), &dom); err != nil {
		return nil, fmt.Errorf("the domain's XML: %w", err)
	}
	var out []domainDisk
	for _, d := range dom.Disks {
		if (d.Device == "" || d.Device == "disk") && d.ReadOnly == nil && d.Target.Dev != "" {
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("the domain has no disk to back up")
	}
	return out, nil
}

// backupXML is libvirt's <domainbackup> of a pull-mode backup.
type backupXML struct {
	XMLName     xml.Name `xml:"domainbackup"`
	Mode        string   `xml:"mode,attr"`
	Incremental string   `xml:"incremental,omitempty"`
	Server      struct {
		Transport string `xml:"transport,attr"`
		Socket    string `xml:"socket,attr"`
	} `xml:"server"`
	Disks []backupDiskXML `xml:"disks>disk"`
}

type backupDiskXML struct {
	Name         string `xml:"name,attr"`
	Backup       string `xml:"backup,attr"`
	Type         string `xml:"type,attr"`
	ExportName   string `xml:"exportname,attr"`
	ExportBitmap string `xml:"exportbitmap,attr,omitempty"`
	Scratch      struct {
		File string `xml:"file,attr"`
	} `xml:"scratch"`
}

type checkpointXML struct {
	XMLName     xml.Name `xml:"domaincheckpoint"`
	Name        string   `xml:"name"`
	Description string   `xml:"description"`
}

// incrementalBase is the checkpoint the latest point of resource
// recorded for every one of disks, when libvirt still has it: the base
// of an incremental backup. "" (and why) otherwise.
func incrementalBase(v *snapshot.Vault, l *libvirt.Libvirt, dom libvirt.Domain, resource string, disks []domainDisk) (string, string, error) {
	ids, err := v.PointIDs(resource)
	if err != nil || len(ids) == 0 {
		return "", "the resource has no point yet", err
	}
	p, err := v.Point(resource, ids[len(ids)-1])
	if err != nil {
		return "", "", err
	}
	base := ""
	for _, d := range disks {
		pd := p.Disk(d.Target.Dev)
		switch {
		case pd == nil:
			return "", fmt.Sprintf("%s has no disk %s", p.Name(), d.Target.Dev), nil
		case pd.Checkpoint == "" || (base != "" && pd.Checkpoint != base):
			return "", fmt.Sprintf("%s has no one checkpoint for all the disks", p.Name()), nil
		}
		base = pd.Checkpoint
	}
	if _, err := l.DomainCheckpointLookupByName(dom, base, 0); err != nil {
		return "", fmt.Sprintf("libvirt has no checkpoint %s (of %s) any more", base, p.Name()), nil
	}
	return base, "", nil
}

// dialLibvirt connects to libvirtd's QEMU driver.
func dialLibvirt(sock string) (*libvirt.Libvirt, error) {
	if sock == "" {
		sock = defaultLibvirtSocket
	}
	l := libvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(sock), dialers.WithLocalTimeout(15*time.Second)))
	if err := l.ConnectToURI(libvirt.QEMUSystem); err != nil {
		return nil, fmt.Errorf("libvirt at %s: %w", sock, err)
	}
	return l, nil
}

// runLibvirtBackup backs up a running domain's disks as a new point of
// r.Name (see the top of this file).
func runLibvirtBackup(ctx context.Context, v *snapshot.Vault, r backupRequest, jc *jobContext) (*pointView, error) {
	lr := r.Libvirt
	l, err := dialLibvirt(lr.Socket)
	if err != nil {
		return nil, err
	}
	defer l.Disconnect()
	dom, err := l.DomainLookupByName(lr.Domain)
	if err != nil {
		return nil, fmt.Errorf("libvirt domain %s: %w", lr.Domain, err)
	}
	domXML, err := l.DomainGetXMLDesc(dom, 0)
	if err != nil {
		return nil, fmt.Errorf("libvirt domain %s: %w", lr.Domain, err)
	}
	disks, err := domainDisks(domXML)
	if err != nil {
		return nil, fmt.Errorf("libvirt domain %s: %w", lr.Domain, err)
	}
	base, why, err := incrementalBase(v, l, dom, r.Name, disks)
	if err != nil {
		return nil, err
	}
	if base == "" {
		jc.logf("libvirt %s: a full backup (%s)", lr.Domain, why)
	} else {
		jc.logf("libvirt %s: the changes since checkpoint %s", lr.Domain, base)
	}
	newCP := checkpointPrefix + time.Now().UTC().Format("20060102T150405.000000000Z")

	parent := lr.ScratchDir
	if parent == "" {
		parent = os.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "cairn-libvirt-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	// QEMU runs as its own user and makes the export's socket here: the
	// folder is that user's (cairn, as root, still reaches it).
	if uid, gid, ok := qemuOwner(domXML); ok {
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, fmt.Errorf("%s: %w (QEMU runs as %d:%d and must make its socket there)", dir, err, uid, gid)
		}
	}
	bx := backupXML{Mode: "pull", Incremental: base}
	bx.Server.Transport, bx.Server.Socket = "unix", filepath.Join(dir, "nbd.sock")
	for _, d := range disks {
		bd := backupDiskXML{Name: d.Target.Dev, Backup: "yes", Type: "file", ExportName: d.Target.Dev}
		if base != "" {
			bd.ExportBitmap = base
		}
		bd.Scratch.File = filepath.Join(dir, d.Target.Dev+".scratch.qcow2")
		bx.Disks = append(bx.Disks, bd)
	}
	bxml, err := xml.Marshal(bx)
	if err != nil {
		return nil, err
	}
	cxml, err := xml.Marshal(checkpointXML{Name: newCP, Description: "cairn backup of " + r.Name})
	if err != nil {
		return nil, err
	}

	consistency := snapshot.ConsistencyApplication
	frozen := false
	if _, err := l.DomainFsfreeze(dom, nil, 0); err != nil {
		if lr.HookFailure != string(policy.Continue) {
			return nil, fmt.Errorf("libvirt %s: freezing the guest's filesystems failed: %w (--hook-failure continue backs up without, crash-consistent)", lr.Domain, err)
		}
		jc.logf("libvirt %s: freeze failed: %v; the point is crash-consistent", lr.Domain, err)
		consistency = snapshot.ConsistencyCrash
	} else {
		frozen = true
	}
	berr := l.DomainBackupBegin(dom, string(bxml), libvirt.OptString{string(cxml)}, 0)
	if frozen {
		if _, err := l.DomainFsthaw(dom, nil, 0); err != nil {
			jc.logf("libvirt %s: thaw failed: %v", lr.Domain, err)
			if berr == nil {
				consistency = snapshot.ConsistencyCrash
			}
		}
	}
	if berr != nil {
		return nil, fmt.Errorf("libvirt %s: beginning the backup: %w", lr.Domain, berr)
	}
	committed := false
	defer func() {
		if err := l.DomainAbortJob(dom); err != nil {
			jc.logf("libvirt %s: ending the backup job: %v", lr.Domain, err)
		}
		// The checkpoint no point records goes; libvirt folds its
		// changes into the one before, so none is lost.
		drop := newCP
		if committed {
			drop = base
		}
		if strings.HasPrefix(drop, checkpointPrefix) {
			if cp, err := l.DomainCheckpointLookupByName(dom, drop, 0); err == nil {
				if err := l.DomainCheckpointDelete(cp, 0); err != nil {
					jc.logf("libvirt %s: deleting checkpoint %s: %v", lr.Domain, drop, err)
				}
			}
		}
	}()

	sources := make([]backupDisk, len(disks))
	for i, d := range disks {
		q := "checkpoint=" + newCP
		if base != "" {
			q = "bitmap=" + base + "&" + q
		}
		sources[i] = backupDisk{Name: d.Target.Dev, Path: nbd.UnixURI(bx.Server.Socket, d.Target.Dev) + "&" + q}
	}
	srcs, err := openSources(ctx, sources, "")
	if err != nil {
		return nil, err
	}
	defer closeSources(srcs)
	ds := make([]snapshot.DiskSource, len(srcs))
	for i, s := range srcs {
		ds[i] = s.DiskSource
		// The disk's storage, not the export's passing socket, is what
		// the point names as its source.
		ds[i].Path = disks[i].where()
		jc.logf("disk %s: %s (libvirt %s, %s)", s.Name, ds[i].Path, lr.Domain, s.describe())
	}
	p, err := v.Backup(ctx, r.Name, ds, snapshot.BackupOptions{Progress: jc.progress,
		RequireSameDisks: r.RequireSameDisks, Consistency: consistency})
	if err != nil {
		return nil, err
	}
	committed = true
	return backupDone(p, jc), nil
}
