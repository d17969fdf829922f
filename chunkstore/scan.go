package chunkstore

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/cairn-backup/cairn/chunkstore/storage"
	"github.com/cairn-backup/cairn/index"
)

// storageReaderAt reads one object as an io.ReaderAt.
type storageReaderAt struct {
	ctx  context.Context
	st   storage.Storage
	name string
}

func (r storageReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if err := r.st.ReadAt(r.ctx, storage.Packs, r.name, p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

// BlobCheck is the outcome of checking one blob found in a pack.
type BlobCheck struct {
	Hash   Hash
	Kind   Kind
	Offset int64
	Length int64 // header and payload
	RawLen int
	Err    error // nil when the blob decompresses and matches its hash
}

// PackCheck is what CheckPack found of a pack as a whole.
type PackCheck struct {
	// TrailerErr says that a version 2 pack's trailer is damaged or
	// gone. That harms no block (reads never use the trailer, and repair
	// reads the blob headers instead), but it is damage in storage all
	// the same, worth a note.
	TrailerErr error
}

// CheckPack reads pack id front to back, decompresses and re-hashes every
// blob on all cores, and calls fn for each blob in pack order. A pack
// whose blob structure is broken stops the scan with an error wrapping
// ErrCorrupt after reporting the blobs before the damage. A version 2
// pack's trailer is not a blob: the scan ends where the trailer says the
// blobs end (or, with the trailer damaged, where one seems to start).
func (s *Store) CheckPack(ctx context.Context, id index.PackID, fn func(BlobCheck)) (PackCheck, error) {
	var pc PackCheck
	name := PackName(id)
	info, err := s.st.Stat(ctx, storage.Packs, name)
	if err != nil {
		return pc, err
	}
	end := info.Size
	_, at, trailerErr := readTrailer(ctx, s.st, name, info.Size)
	if trailerErr == nil {
		end = at
	}
	r := bufio.NewReaderSize(io.NewSectionReader(storageReaderAt{ctx, s.st, name}, 0, end), 1<<20)
	ph := make([]byte, packHeaderSize)
	if _, err := io.ReadFull(r, ph); err != nil {
		return pc, fmt.Errorf("%w: pack %s: short header", ErrCorrupt, id)
	}
	version, err := checkPackHeader(ph)
	if err != nil {
		return pc, fmt.Errorf("pack %s: %w", id, err)
	}
	if version >= 2 && trailerErr != nil && ctx.Err() == nil {
		pc.TrailerErr = fmt.Errorf("pack %s: its trailer (the list of its blobs) is damaged or missing", id)
	}

	type job struct {
		c       BlobCheck
		hdr     blobHeader
		payload []byte
		done    chan struct{}
	}
	jobs := make(chan *job)
	ordered := make(chan *job, 2*runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i := 0; i < runtime.GOMAXPROCS(0); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				raw := newBlockBuf(int(j.hdr.RawLen))
				if err := decompress(j.hdr.Codec, j.payload, raw); err != nil {
					j.c.Err = fmt.Errorf("%w: %v", ErrCorrupt, err)
				} else if Sum(raw) != j.hdr.Hash {
					j.c.Err = fmt.Errorf("%w: content does not match its hash", ErrCorrupt)
				}
				close(j.done)
			}
		}()
	}
	deliver := make(chan struct{})
	go func() {
		for j := range ordered {
			<-j.done
			fn(j.c)
		}
		close(deliver)
	}()

	off := int64(packHeaderSize)
	var scanErr error
	var found []BlobInfo
	hb := make([]byte, blobHeaderSize)
	for off < end {
		if err := ctx.Err(); err != nil {
			scanErr = err
			break
		}
		if _, err := io.ReadFull(r, hb); err != nil {
			scanErr = fmt.Errorf("%w: pack %s: truncated blob header at %d", ErrCorrupt, id, off)
			break
		}
		hdr, err := decodeBlobHeader(hb)
		if err != nil {
			if isTrailerAt(hb, found, off) {
				break // a damaged trailer; the blobs before it were all
			}
			scanErr = fmt.Errorf("pack %s at %d: %w", id, off, err)
			break
		}
		if len(found) == 0 {
			found = append(found, blobInfo(hdr, off))
		}
		payload := make([]byte, hdr.StoredLen)
		if _, err := io.ReadFull(r, payload); err != nil {
			scanErr = fmt.Errorf("%w: pack %s: truncated blob at %d", ErrCorrupt, id, off)
			break
		}
		j := &job{hdr: hdr, payload: payload, done: make(chan struct{}), c: BlobCheck{
			Hash: hdr.Hash, Kind: hdr.Kind, Offset: off, Length: int64(blobHeaderSize) + int64(hdr.StoredLen), RawLen: int(hdr.RawLen)}}
		off += j.c.Length
		ordered <- j
		if !checkBlobCRC(hb, payload, hdr.CRC) {
			j.c.Err = fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
			close(j.done)
			continue
		}
		jobs <- j
	}
	close(jobs)
	wg.Wait()
	close(ordered)
	<-deliver
	return pc, scanErr
}
