package fs

import (
	"hash/fnv"

	"github.com/cairn-backup/cairn/snapshot"
)

// Vault is what the filesystem needs from a vault. *snapshot.Vault
// implements it.
type Vault interface {
	Resources() ([]string, error)
	PointIDs(resource string) ([]string, error)
	Point(resource, id string) (*snapshot.Point, error)
	OpenDisk(p *snapshot.Point, name string) (*snapshot.DiskReader, error)
	// Hold keeps a point's bytes readable, deleted or not, until release.
	Hold(p *snapshot.Point) (release func())
}

var _ Vault = (*snapshot.Vault)(nil)

// inoOf derives a stable inode number from a node's identity. The top
// bit stays clear: go-fuse numbers its automatic inodes from 2^63.
func inoOf(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	ino := h.Sum64() &^ (1 << 63)
	if ino < 2 {
		ino += 2
	}
	return ino
}
