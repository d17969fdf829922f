// Package guest defines the read-only view of a filesystem that lives
// inside a backed-up disk: the FS interface every reader under fs/guest
// implements (ext4, fat, ...), and the errors they wrap.
//
// Readers work over an io.ReaderAt of a partition or bare disk. They parse
// lazily, read at random offsets (FUSE reads that way), keep memory bounded
// by caches rather than by volume or directory size, and never panic or
// loop on damaged input: such input yields an error wrapping ErrCorrupt.
package guest
