package chunkstore

import (
	"bufio"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/cairn-backup/cairn/index"
)

// BlobCheck is the outcome of checking one blob found in a pack.
type BlobCheck struct {
	Hash   Hash
	Kind   Kind
	Offset int64
	Length int64 // header and payload
	RawLen int
	Err    error // nil when the blob decompresses and matches its hash
}

// CheckPack reads pack id front to back, decompresses and re-hashes every
// blob on all cores, and calls fn for each blob in pack order. A pack
// whose blob structure is broken stops the scan with an error wrapping
// ErrCorrupt after reporting the blobs before the damage.
func (s *Store) CheckPack(id index.PackID, fn func(BlobCheck)) error {
	obj, err := s.be.Open(id.String() + ".pack")
	if err != nil {
		return err
	}
	defer obj.Close()
	r := bufio.NewReaderSize(io.NewSectionReader(obj, 0, obj.Size()), 1<<20)
	ph := make([]byte, packHeaderSize)
	if _, err := io.ReadFull(r, ph); err != nil {
		return fmt.Errorf("%w: pack %s: short header", ErrCorrupt, id)
	}
	if err := checkPackHeader(ph); err != nil {
		return fmt.Errorf("pack %s: %w", id, err)
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
	hb := make([]byte, blobHeaderSize)
	for off < obj.Size() {
		if _, err := io.ReadFull(r, hb); err != nil {
			scanErr = fmt.Errorf("%w: pack %s: truncated blob header at %d", ErrCorrupt, id, off)
			break
		}
		hdr, err := decodeBlobHeader(hb)
		if err != nil {
			scanErr = fmt.Errorf("pack %s at %d: %w", id, off, err)
			break
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
	return scanErr
}
