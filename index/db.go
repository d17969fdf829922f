package index

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

var (
	// ErrNotFound is returned for a key that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrCorrupt is returned when a stored record cannot be decoded.
	ErrCorrupt = errors.New("index record damaged")
	// ErrLocked is returned when another process has the index open.
	ErrLocked = errors.New("index is in use by another process")
	// ErrNoWrite is returned when the index cannot be opened for writing
	// because its filesystem is full or read-only; it may still open
	// with Options.ReadOnly.
	ErrNoWrite = errors.New("index cannot be written")
)

// Options tune the index. The zero value means "default" for every field.
type Options struct {
	// InMemory keeps everything in memory, for tests.
	InMemory bool
	// CacheSize bounds Badger's block and index caches together, in bytes.
	// Default 16 MiB.
	CacheSize int64
	// ReadOnly opens the index without the ability to write.
	ReadOnly bool
	// Logf receives Badger's warnings and errors; nil discards them.
	Logf func(format string, args ...any)
}

// DB is the vault's index.
type DB struct {
	db *badger.DB
}

// Open opens (creating if needed) the index stored in dir.
func Open(dir string, o Options) (*DB, error) {
	cache := o.CacheSize
	if cache <= 0 {
		cache = 16 << 20
	}
	// Badger's defaults (64 MiB memtables ×5, a 256 MiB block cache) cost
	// hundreds of MiB; our records are tiny and written in batches, so a
	// few small memtables and caches keep RSS low at little cost in speed.
	opts := badger.DefaultOptions(dir).
		WithInMemory(o.InMemory).
		WithReadOnly(o.ReadOnly).
		WithLogger(badgerLogger{o.Logf}).
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithBaseTableSize(4 << 20).
		WithBaseLevelSize(16 << 20).
		WithValueLogFileSize(64 << 20).
		WithValueThreshold(1 << 20).
		WithBlockCacheSize(cache * 3 / 4).
		WithIndexCacheSize(cache / 4).
		WithCompression(options.None). // hashes and locations do not compress
		WithNumCompactors(2).
		WithNumGoroutines(2).
		WithDetectConflicts(false).
		WithMetricsEnabled(false)
	if o.InMemory {
		opts = opts.WithDir("").WithValueDir("")
	} else if !o.ReadOnly {
		removeEmptyMemtables(dir)
	}
	db, err := badger.Open(opts)
	if err != nil {
		msg := err.Error()
		switch {
		case strings.Contains(msg, "Cannot acquire directory lock"):
			return nil, ErrLocked
		case !o.ReadOnly && (errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
			strings.Contains(msg, "no space left") || strings.Contains(msg, "quota exceeded")):
			return nil, fmt.Errorf("%w: its filesystem is full (%s)", ErrNoWrite, lastPart(msg))
		case !o.ReadOnly && (errors.Is(err, syscall.EROFS) || strings.Contains(msg, "read-only file system")):
			return nil, fmt.Errorf("%w: its filesystem is read-only", ErrNoWrite)
		}
		return nil, fmt.Errorf("open index: %w", err)
	}
	if !o.InMemory && !o.ReadOnly {
		tightenModes(dir)
	}
	return &DB{db: db}, nil
}

// removeEmptyMemtables deletes memtable logs of length zero. Badger
// creates a memtable's log, then sizes it; a process killed between the
// two leaves an empty log, which the next open fails on ("while opening
// memtables ... Create a new file") while it sizes the file, so that
// only the open after that one succeeds. An empty log holds no entries,
// so removing it loses nothing.
func removeEmptyMemtables(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".mem") {
			continue
		}
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() && info.Size() == 0 {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// lastPart is the innermost cause of a chain of "a: b: c" messages.
func lastPart(msg string) string {
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}

// tightenModes makes the index's files readable by their owner only.
// Badger creates them with mode 0666 less the umask; the cairn command
// sets a umask of 077, and this mends files of vaults made before it
// did, or by other programs that use this package.
func tightenModes(dir string) {
	os.Chmod(dir, 0o700)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() && info.Mode().Perm()&0o077 != 0 {
			os.Chmod(filepath.Join(dir, e.Name()), info.Mode().Perm()&0o700)
		}
	}
}

// Close flushes and closes the index.
func (d *DB) Close() error { return d.db.Close() }

// Sync makes every write so far durable.
func (d *DB) Sync() error { return d.db.Sync() }

// Block returns the location of block h, or ErrNotFound.
func (d *DB) Block(h Hash) (Location, error) {
	var loc Location
	err := d.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(blockKey(h))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			loc, err = decodeLocation(v)
			return err
		})
	})
	return loc, err
}

// HasBlock reports whether block h is indexed.
func (d *DB) HasBlock(h Hash) (bool, error) {
	_, err := d.Block(h)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// BlockEntry pairs a hash with its location, for batch writes and scans.
type BlockEntry struct {
	Hash     Hash
	Location Location
}

// CommitPack records a durable pack and the locations of all its blobs in
// one batch, then syncs. Callers must have made the pack durable first.
func (d *DB) CommitPack(id PackID, info PackInfo, blocks []BlockEntry) error {
	wb := d.db.NewWriteBatch()
	defer wb.Cancel()
	for _, b := range blocks {
		if err := wb.Set(blockKey(b.Hash), b.Location.encode()); err != nil {
			return fmt.Errorf("index blocks: %w", err)
		}
	}
	if err := wb.Set(packKey(id), info.encode()); err != nil {
		return fmt.Errorf("index pack: %w", err)
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("index pack %s: %w", id, err)
	}
	return d.db.Sync()
}

// DeleteBlocks removes block locations, for garbage collection and repair.
func (d *DB) DeleteBlocks(hashes []Hash) error {
	wb := d.db.NewWriteBatch()
	defer wb.Cancel()
	for _, h := range hashes {
		if err := wb.Delete(blockKey(h)); err != nil {
			return err
		}
	}
	if err := wb.Flush(); err != nil {
		return err
	}
	return d.db.Sync()
}

// Blocks calls fn for every indexed block, in hash order. fn must not
// call back into d for writes.
func (d *DB) Blocks(fn func(BlockEntry) error) error {
	return d.scan([]byte{prefixBlock}, true, func(k, v []byte) error {
		var e BlockEntry
		copy(e.Hash[:], k[1:])
		loc, err := decodeLocation(v)
		if err != nil {
			return fmt.Errorf("block %s: %w", e.Hash, err)
		}
		e.Location = loc
		return fn(e)
	})
}

// Packs calls fn for every committed pack, in ID order.
func (d *DB) Packs(fn func(PackID, PackInfo) error) error {
	return d.scan([]byte{prefixPack}, true, func(k, v []byte) error {
		var id PackID
		copy(id[:], k[1:])
		info, err := decodePackInfo(v)
		if err != nil {
			return fmt.Errorf("pack %s: %w", id, err)
		}
		return fn(id, info)
	})
}

// PutPoint stores a point's manifest and syncs: this is the commit of a
// backup, so it happens after all of the point's data is durable.
func (d *DB) PutPoint(resource, id string, manifest []byte) error {
	if strings.IndexByte(resource, 0) >= 0 || resource == "" || id == "" {
		return fmt.Errorf("invalid point key %q@%q", resource, id)
	}
	err := d.db.Update(func(txn *badger.Txn) error {
		return txn.Set(pointKey(resource, id), manifest)
	})
	if err != nil {
		return fmt.Errorf("commit point %s@%s: %w", resource, id, err)
	}
	return d.db.Sync()
}

// Point returns a point's manifest, or ErrNotFound.
func (d *DB) Point(resource, id string) ([]byte, error) {
	var out []byte
	err := d.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(pointKey(resource, id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		out, err = item.ValueCopy(nil)
		return err
	})
	return out, err
}

// DeletePoints removes point manifests in one transaction and syncs.
func (d *DB) DeletePoints(keys []PointKey) error {
	err := d.db.Update(func(txn *badger.Txn) error {
		for _, k := range keys {
			if err := txn.Delete(pointKey(k.Resource, k.ID)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return d.db.Sync()
}

// PointKey names a point.
type PointKey struct {
	Resource string
	ID       string
}

// Points calls fn for the points of resource (all resources when
// resource is ""), ordered by resource and then ID.
func (d *DB) Points(resource string, fn func(k PointKey, manifest []byte) error) error {
	return d.scan(pointPrefix(resource), true, func(k, v []byte) error {
		r, id, ok := splitPointKey(k)
		if !ok {
			return fmt.Errorf("%w: point key %q", ErrCorrupt, k)
		}
		return fn(PointKey{r, id}, v)
	})
}

// PointKeys lists point keys without reading manifests.
func (d *DB) PointKeys(resource string) ([]PointKey, error) {
	var keys []PointKey
	err := d.scan(pointPrefix(resource), false, func(k, _ []byte) error {
		r, id, ok := splitPointKey(k)
		if !ok {
			return fmt.Errorf("%w: point key %q", ErrCorrupt, k)
		}
		keys = append(keys, PointKey{r, id})
		return nil
	})
	return keys, err
}

// scan iterates keys with prefix; v is nil unless values is set. k and v
// are only valid during fn.
func (d *DB) scan(prefix []byte, values bool, fn func(k, v []byte) error) error {
	return d.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = values
		opts.PrefetchSize = 64
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			item := it.Item()
			var err error
			if values {
				err = item.Value(func(v []byte) error { return fn(item.Key(), v) })
			} else {
				err = fn(item.Key(), nil)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

type badgerLogger struct {
	logf func(string, ...any)
}

func (l badgerLogger) Errorf(f string, a ...any) {
	if l.logf != nil {
		l.logf("index: "+f, a...)
	}
}
func (l badgerLogger) Warningf(f string, a ...any) { l.Errorf(f, a...) }
func (badgerLogger) Infof(string, ...any)          {}
func (badgerLogger) Debugf(string, ...any)         {}
