package snapshot

import "github.com/cairn-backup/cairn/index"

// Stats summarises a vault.
type Stats struct {
	Resources int   `json:"resources"`
	Points    int   `json:"points"`
	Blocks    int64 `json:"blocks"` // distinct stored blocks, map pages included
	Packs     int   `json:"packs"`
	// Protected is the sum over all points of their disks' sizes.
	Protected int64 `json:"bytes_protected"`
	// Allocated is the sum over all points of their non-zero bytes.
	Allocated int64 `json:"bytes_allocated"`
	// Unique is the raw size of the distinct stored blocks.
	Unique int64 `json:"bytes_unique"`
	// Stored is the size of all packs on disk.
	Stored int64 `json:"bytes_stored"`
	// DedupRatio is Allocated / Unique: how often, on average, a stored
	// byte is used by the points.
	DedupRatio float64 `json:"dedup_ratio"`
	// CompressionRatio is Unique / Stored.
	CompressionRatio float64 `json:"compression_ratio"`
}

// Stats computes the vault's statistics. It scans the index once.
func (v *Vault) Stats() (*Stats, error) {
	s := &Stats{}
	points, err := v.Points("")
	if err != nil {
		return nil, err
	}
	s.Points = len(points)
	for i, p := range points {
		if i == 0 || points[i-1].Resource != p.Resource {
			s.Resources++
		}
		s.Protected += p.Size()
		s.Allocated += p.Allocated()
	}
	if err := v.idx.Blocks(func(e index.BlockEntry) error {
		s.Blocks++
		s.Unique += int64(e.Location.RawLen)
		return nil
	}); err != nil {
		return nil, err
	}
	if err := v.idx.Packs(func(_ index.PackID, info index.PackInfo) error {
		s.Packs++
		s.Stored += info.Size
		return nil
	}); err != nil {
		return nil, err
	}
	if s.Unique > 0 {
		s.DedupRatio = float64(s.Allocated) / float64(s.Unique)
	}
	if s.Stored > 0 {
		s.CompressionRatio = float64(s.Unique) / float64(s.Stored)
	}
	return s, nil
}
