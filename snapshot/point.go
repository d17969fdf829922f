package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/chunkstore/storage"
	"github.com/cairn-backup/cairn/index"
)

// Point is a committed backup point: its manifest.
type Point struct {
	Version  int       `json:"version"`
	Resource string    `json:"resource"`
	ID       string    `json:"id"`
	Time     time.Time `json:"time"`
	// Parent is the point this one was compared against, if any. It is
	// informational only: this point does not depend on it.
	Parent string `json:"parent,omitempty"`
	Disks  []Disk `json:"disks"`
	// Removed lists the parent's disks this point does not have.
	Removed []string `json:"removed,omitempty"`
	// Pinned points are kept whatever retention rules say.
	Pinned bool `json:"pinned,omitempty"`
	// Consistency is "application" when freeze hooks ran around the
	// read and succeeded, "crash" otherwise (a disk read as it was, as
	// after a power cut). Empty in points made before it was recorded.
	Consistency string `json:"consistency,omitempty"`
	// Trigger is "manual", or "policy NAME" for a scheduled backup.
	Trigger string `json:"trigger,omitempty"`
	// Added is what the point cost the vault: stored bytes of new blocks
	// and map pages, after dedup and compression.
	Added    int64         `json:"added"`
	Duration time.Duration `json:"duration_ns"`
}

// Disk is one disk of a point.
type Disk struct {
	Name      string `json:"name"`
	Source    string `json:"source,omitempty"`
	Size      int64  `json:"size"`
	BlockSize int    `json:"block_size"`
	// Pages are the block map pages, in order; a zero hash is a page of
	// holes only.
	Pages []index.Hash `json:"pages"`
	// Allocated counts bytes in blocks that are not all zero.
	Allocated int64 `json:"allocated"`
	// Base is the parent's disk this one was compared against: its own
	// name, the old name of a renamed disk, or "" for a disk new in this
	// point (backed up in full).
	Base string `json:"base,omitempty"`
	// Changed counts bytes in blocks that differ from the base disk (all
	// allocated bytes without one).
	Changed int64 `json:"changed"`
	// Added counts stored bytes this disk added to the vault.
	Added int64 `json:"added"`
	// Read counts the bytes read from the source (0 in points made
	// before it was recorded).
	Read int64 `json:"read,omitempty"`
	// Bitmap is the dirty bitmap the disk was read from: only the blocks
	// it reported changed were read, the others are the base disk's. ""
	// when every block that might hold data was read (a full read).
	Bitmap string `json:"bitmap,omitempty"`
	// BitmapUnused says which bitmap the backup was given and why it was
	// not used ("bitmap NAME not used: REASON"); the disk was then read
	// in full.
	BitmapUnused string `json:"bitmap_unused,omitempty"`
	// Checkpoint is the bitmap that began recording the disk's changes
	// when the state this point holds was taken. The next backup trusts
	// bitmap NAME only when the disk it is compared with recorded
	// checkpoint NAME (doc.go).
	Checkpoint string `json:"checkpoint,omitempty"`
}

// Name returns RESOURCE@ID.
func (p *Point) Name() string { return p.Resource + "@" + p.ID }

// Full reports whether the point was taken without a parent.
func (p *Point) Full() bool { return p.Parent == "" }

// Size is the sum of the disks' sizes.
func (p *Point) Size() (n int64) {
	for _, d := range p.Disks {
		n += d.Size
	}
	return n
}

// Allocated is the sum of the disks' allocated bytes.
func (p *Point) Allocated() (n int64) {
	for _, d := range p.Disks {
		n += d.Allocated
	}
	return n
}

// Changed is the sum of the disks' changed bytes.
func (p *Point) Changed() (n int64) {
	for _, d := range p.Disks {
		n += d.Changed
	}
	return n
}

// Disk returns the disk named name, or nil.
func (p *Point) Disk(name string) *Disk {
	for i := range p.Disks {
		if p.Disks[i].Name == name {
			return &p.Disks[i]
		}
	}
	return nil
}

// Blocks is the number of blocks of the disk, holes included.
func (d *Disk) Blocks() int64 { return (d.Size + int64(d.BlockSize) - 1) / int64(d.BlockSize) }

// pointVersion is the manifest version written. Version 2 records each
// disk's Base; version 1 manifests read as comparing same-named disks.
const pointVersion = 2

func decodePoint(b []byte) (*Point, error) {
	var p Point
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("damaged point manifest: %v", err)
	}
	if p.Version < 1 || p.Version > pointVersion {
		return nil, fmt.Errorf("point manifest version %d is not supported by this cairn", p.Version)
	}
	if err := checkPoint(&p); err != nil {
		return nil, fmt.Errorf("damaged point manifest: %v", err)
	}
	return &p, nil
}

// maxDiskSize bounds a disk's size in a manifest (8 EiB would overflow
// the block count arithmetic; 2^56 bytes is 64 PiB).
const maxDiskSize = 1 << 56

// checkPoint checks what a manifest says before anything trusts it:
// names that are safe as file names in the mount and keys in the index,
// an ID of the form newID makes, and for each disk a block map of
// exactly the pages its size needs.
func checkPoint(p *Point) error {
	if err := CheckName("resource", p.Resource); err != nil {
		return err
	}
	if !validID(p.ID) {
		return fmt.Errorf("%s: point ID %q is not a UTC time such as 20261121T100000Z", p.Resource, p.ID)
	}
	seen := map[string]bool{}
	for _, d := range p.Disks {
		if err := CheckName("disk", d.Name); err != nil || seen[d.Name] {
			return fmt.Errorf("%s@%s: disk name %q is not valid, or given twice", p.Resource, p.ID, d.Name)
		}
		seen[d.Name] = true
		if d.BlockSize < MinBlockSize || d.BlockSize > MaxBlockSize || d.BlockSize&(d.BlockSize-1) != 0 ||
			d.Size < 0 || d.Size > maxDiskSize || int64(len(d.Pages)) != (d.Blocks()+PageEntries-1)/PageEntries || d.Read < 0 {
			return fmt.Errorf("%s@%s: disk %s", p.Resource, p.ID, d.Name)
		}
	}
	return nil
}

// validID reports whether id is a point ID: YYYYMMDDTHHMMSSZ, with -N
// (N at least 2) when two points of a resource fall in one second.
func validID(id string) bool {
	base, n, dup := strings.Cut(id, "-")
	if _, err := time.Parse(idLayout, base); err != nil || len(base) != len(idLayout) {
		return false
	}
	if !dup {
		return true
	}
	k, err := strconv.Atoi(n)
	return err == nil && k >= 2 && strconv.Itoa(k) == n
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// CheckName validates a resource or disk name.
func CheckName(kind, name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w: %s %q: use letters, digits, '.', '_' and '-' (up to 128, starting with a letter or digit)", ErrBadName, kind, name)
	}
	return nil
}

const idLayout = "20060102T150405Z"

// Resources lists the resources that have points, sorted.
func (v *Vault) Resources() ([]string, error) {
	keys, err := v.idx.PointKeys("")
	if err != nil {
		return nil, v.indexError(err)
	}
	var out []string
	for _, k := range keys {
		if len(out) == 0 || out[len(out)-1] != k.Resource {
			out = append(out, k.Resource)
		}
	}
	return out, nil
}

// Points lists the points of resource (of all resources when ""), oldest
// first within each resource. A point whose record cannot be read is
// left out, logged, and listed by BadRecords: one damaged record never
// hides the others.
func (v *Vault) Points(resource string) ([]*Point, error) {
	var out []*Point
	err := v.idx.Points(resource, func(k index.PointKey, rec []byte) error {
		p, err := v.decodeIndexed(k.Resource, k.ID, rec)
		if err != nil {
			v.logf("%s@%s: %v", k.Resource, k.ID, err)
			return nil
		}
		out = append(out, p)
		return nil
	})
	if err != nil {
		return nil, v.indexError(err)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Resource != out[j].Resource {
			return out[i].Resource < out[j].Resource
		}
		return idLess(out[i].ID, out[j].ID)
	})
	return out, nil
}

// decodeIndexed decodes the record the index holds for resource@id.
func (v *Vault) decodeIndexed(resource, id string, rec []byte) (*Point, error) {
	p, err := decodeRecord(rec, v.cfg.Format < 2)
	if err == nil && (p.Resource != resource || p.ID != id) {
		err = fmt.Errorf("%w: it holds %s", ErrBadRecord, p.Name())
	}
	return p, err
}

// BadRecord is a point whose record cannot be read.
type BadRecord struct {
	Point  string `json:"point"`
	Reason string `json:"reason"`
}

// BadRecords lists the points whose records cannot be read, from the
// index or from storage: repair and verify name them, points lists them
// as damaged.
func (v *Vault) BadRecords() ([]BadRecord, error) {
	var out []BadRecord
	seen := map[string]bool{}
	err := v.idx.Points("", func(k index.PointKey, rec []byte) error {
		if _, err := v.decodeIndexed(k.Resource, k.ID, rec); err != nil {
			name := recordName(k.Resource, k.ID)
			seen[name] = true
			out = append(out, BadRecord{Point: name, Reason: err.Error()})
		}
		return nil
	})
	if err == nil {
		err = v.idx.BadRecords(func(name, reason string) error {
			if !seen[name] {
				out = append(out, BadRecord{Point: name, Reason: reason})
			}
			return nil
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Point < out[j].Point })
	return out, v.indexError(err)
}

// idLess orders point IDs oldest first: by time, then by suffix, so
// "T...Z-10" sorts after "T...Z-9" and "T...Z" before both.
func idLess(a, b string) bool {
	ab, as := splitID(a)
	bb, bs := splitID(b)
	if ab != bb {
		return ab < bb
	}
	return as < bs
}

func splitID(id string) (base string, seq int) {
	base, suffix, ok := strings.Cut(id, "-")
	if !ok {
		return id, 1
	}
	n, err := strconv.Atoi(suffix)
	if err != nil {
		return id, 0
	}
	return base, n
}

// PointIDs lists point IDs of one resource, oldest first, without
// decoding records.
func (v *Vault) PointIDs(resource string) ([]string, error) {
	keys, err := v.idx.PointKeys(resource)
	if err != nil {
		return nil, v.indexError(err)
	}
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID
	}
	sort.Slice(ids, func(i, j int) bool { return idLess(ids[i], ids[j]) })
	return ids, nil
}

// Point returns the point resource@id, with id exact.
func (v *Vault) Point(resource, id string) (*Point, error) {
	rec, err := v.idx.Point(resource, id)
	if errors.Is(err, index.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s@%s", ErrNoPoint, resource, id)
	}
	if err != nil {
		return nil, v.indexError(err)
	}
	p, err := v.decodeIndexed(resource, id, rec)
	if err != nil {
		return nil, fmt.Errorf("%s@%s: %w (cairn repair reads it again from storage)", resource, id, err)
	}
	return p, nil
}

// Resolve finds a point from its user-facing reference: RESOURCE@ID,
// RESOURCE@latest, or RESOURCE@PREFIX where PREFIX starts exactly one ID
// (an exact ID wins over longer IDs it prefixes).
func (v *Vault) Resolve(ref string) (*Point, error) {
	resource, sel, ok := strings.Cut(ref, "@")
	if !ok || resource == "" || sel == "" {
		return nil, fmt.Errorf("%w: %q: write a point as NAME@ID or NAME@latest", ErrNoPoint, ref)
	}
	ids, err := v.PointIDs(resource)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: resource %q has no points", ErrNoPoint, resource)
	}
	if sel == "latest" {
		return v.Point(resource, ids[len(ids)-1])
	}
	var matches []string
	for _, id := range ids {
		if id == sel {
			return v.Point(resource, id)
		}
		if strings.HasPrefix(id, sel) {
			matches = append(matches, id)
		}
	}
	switch len(matches) {
	case 0:
		return nil, fmt.Errorf("%w: %s", ErrNoPoint, ref)
	case 1:
		return v.Point(resource, matches[0])
	}
	if len(matches) > 3 {
		matches = append(matches[:3], "...")
	}
	return nil, fmt.Errorf("%w: %s matches %s", ErrAmbiguous, ref, strings.Join(matches, ", "))
}

// Delete removes points: each point's record leaves storage, then the
// index. Blocks they alone used stay in the vault until garbage
// collection; every other point is untouched and stays complete.
func (v *Vault) Delete(points []*Point) error {
	if v.readOnly {
		return v.readOnlyErr()
	}
	for _, p := range points {
		if p.Pinned {
			return fmt.Errorf("%w: %s (unpin it first)", ErrPinned, p.Name())
		}
		if why := v.fence.inUse(p.Name()); why != "" {
			return fmt.Errorf("%w: %s is %s; stop that first", ErrInUse, p.Name(), why)
		}
	}
	ctx := context.Background()
	keys := make([]index.PointKey, 0, len(points))
	for _, p := range points {
		if err := v.st.Delete(ctx, storage.Points, recordName(p.Resource, p.ID)); err != nil {
			if len(keys) > 0 {
				v.dropFromIndex(keys)
			}
			return fmt.Errorf("delete %s: %w", p.Name(), err)
		}
		keys = append(keys, index.PointKey{Resource: p.Resource, ID: p.ID})
	}
	return v.dropFromIndex(keys)
}

func (v *Vault) dropFromIndex(keys []index.PointKey) error {
	if err := v.idx.DeletePoints(keys); err != nil {
		v.indexLags("the deletion of points", err)
	}
	return nil
}

// newID picks the ID for a point of resource taken at t: one no point in
// the index or in storage has, and, within t's second, one after the
// last the index issued, so that a point deleted in the second it was
// made does not lend its name to the next (a mount's inodes, a script's
// notes and a replica all take a name for the same bytes). Called with
// commitMu held.
func (v *Vault) newID(ctx context.Context, resource string, t time.Time) (string, error) {
	base := t.UTC().Format(idLayout)
	n := 1 // the first of a second has no suffix
	last, err := v.idx.IssuedID(resource)
	switch {
	case err == nil:
		if lb, k := splitID(last); validID(last) && lb == base {
			n = k + 1
		}
	case !errors.Is(err, index.ErrNotFound):
		return "", err
	}
	for ; ; n++ {
		id := base
		if n > 1 {
			id = fmt.Sprintf("%s-%d", base, n)
		}
		_, err := v.idx.Point(resource, id)
		if errors.Is(err, index.ErrNotFound) {
			_, err = v.st.Stat(ctx, storage.Points, recordName(resource, id))
			if errors.Is(err, storage.ErrNotExist) {
				return id, nil
			}
		}
		if err != nil {
			return "", err
		}
	}
}
