package guest

// DataSeeker is implemented by readers that know which parts of a file
// hold data, so the mount can answer SEEK_DATA and SEEK_HOLE and tools
// such as cp --sparse skip holes without reading them.
type DataSeeker interface {
	// NextData returns the first range [start, end) at or after off that
	// holds mapped data of file ino, clipped to the file size. When no
	// data follows off, start and end are the file size. A range may be
	// followed directly by another one: end is not promised to start a
	// hole, only that [start, end) is data. off must not be negative.
	NextData(ino uint64, off int64) (start, end int64, err error)
}

// Extent is a stretch of a volume's bytes: Len bytes from byte Off.
type Extent struct {
	Off, Len int64
}

// Mapper is implemented by readers that can tell where a file's bytes
// lie on their volume, so the mount can load them ahead of a sequential
// reader.
type Mapper interface {
	// MapFile appends to dst the extents of the volume that hold the
	// bytes [off, off+n) of file ino, in file order, clipped to the file
	// size. Holes and data kept inside metadata (inline files) have no
	// extent. It may stop early on heavily fragmented files.
	MapFile(dst []Extent, ino uint64, off, n int64) ([]Extent, error)
}
