package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-backup/cairn/chunkstore"
	"github.com/cairn-backup/cairn/chunkstore/storage"
	"github.com/cairn-backup/cairn/index"
)

// FormatVersion is the vault layout this code writes. Format 1 vaults
// (points kept only in the index) are upgraded when first opened for
// writing, and read as they are otherwise.
const FormatVersion = 2

// Default settings of a new vault.
const (
	DefaultBlockSize   = 256 << 10
	DefaultCompression = "zstd"
	MinBlockSize       = 4 << 10
	MaxBlockSize       = 4 << 20
)

var (
	ErrNotVault     = errors.New("not a cairn vault")
	ErrAlreadyVault = errors.New("vault already initialized")
	ErrNoPoint      = errors.New("no such point")
	ErrAmbiguous    = errors.New("ambiguous point")
	// ErrNoDisk marks a disk name that the point does not hold.
	ErrNoDisk         = errors.New("no such disk")
	ErrBadName        = errors.New("invalid name")
	ErrLocked         = errors.New("vault is in use by another process")
	ErrTargetTooSmall = errors.New("restore target too small")
	// ErrSourceChanged marks a backup source that changed size or
	// allocation while it was read: the backup fails, nothing is
	// committed.
	ErrSourceChanged = errors.New("the source changed while it was read")
	// ErrBadSetting marks a vault setting that is out of range or unknown.
	ErrBadSetting = errors.New("invalid vault setting")
	// ErrNeedsRepair marks a vault whose index is missing, damaged or not
	// its own, while its storage holds points: nothing is done until
	// cairn repair has rebuilt the index from storage.
	ErrNeedsRepair = errors.New("run cairn repair to rebuild the index from storage")
	// ErrPinned is returned for a delete of a pinned point.
	ErrPinned = errors.New("the point is pinned")
	// ErrInUse is returned for a delete of a point something uses
	// (Vault.Use), such as an NBD export.
	ErrInUse = errors.New("the point is in use")
	// ErrCapacity is returned by a backup that would take the vault past
	// its capacity.
	ErrCapacity = errors.New("the vault is at its capacity")
	// ErrReadOnly is returned by writes to a vault opened read-only.
	ErrReadOnly = errors.New("vault is open read-only")
)

// settingError is a bad setting, said plainly; it is ErrBadSetting.
type settingError struct{ msg string }

func (e settingError) Error() string        { return e.msg }
func (e settingError) Is(target error) bool { return target == ErrBadSetting }

// needsRepair says what is wrong with the index, and what to do.
func needsRepair(format string, args ...any) error {
	return fmt.Errorf("%s; %w", fmt.Sprintf(format, args...), ErrNeedsRepair)
}

// Config is the vault's cairn.json, kept in storage.
type Config struct {
	Format      int       `json:"format"`
	ID          string    `json:"id,omitempty"` // random; binds an index to its vault
	BlockSize   int       `json:"block_size"`
	Compression string    `json:"compression"`
	Created     time.Time `json:"created"`
	// Capacity bounds the bytes the vault's packs may take; 0 is none.
	Capacity int64 `json:"capacity,omitempty"`
}

const configName = "cairn.json"

func (c *Config) check() error {
	if c.BlockSize < MinBlockSize || c.BlockSize > MaxBlockSize || c.BlockSize&(c.BlockSize-1) != 0 {
		return settingError{fmt.Sprintf("chunk size %d: must be a power of two from 4 KiB to 4 MiB", c.BlockSize)}
	}
	if _, err := chunkstore.ParseCodec(c.Compression); err != nil {
		return settingError{err.Error()}
	}
	if c.Capacity < 0 {
		return settingError{fmt.Sprintf("capacity %d: must not be negative", c.Capacity)}
	}
	return nil
}

func newVaultID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Init creates a vault in dir, which must not exist or be empty.
func Init(dir string, cfg Config, now time.Time) error {
	if cfg.BlockSize == 0 {
		cfg.BlockSize = DefaultBlockSize
	}
	if cfg.Compression == "" {
		cfg.Compression = DefaultCompression
	}
	if err := cfg.check(); err != nil {
		return err
	}
	cfg.Format = FormatVersion
	cfg.ID = newVaultID()
	cfg.Created = now.UTC()
	if _, err := os.Stat(filepath.Join(dir, configName)); err == nil {
		return fmt.Errorf("%s: %w", dir, ErrAlreadyVault)
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return fmt.Errorf("%s: directory is not empty and not a vault", dir)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	st, err := storage.NewDir(dir)
	if err != nil {
		return err
	}
	defer st.Close()
	idx, err := index.Open(filepath.Join(dir, indexDir), index.Options{Create: true})
	if err != nil {
		return err
	}
	err = idx.SetVaultID(cfg.ID)
	if cerr := idx.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// The config goes in last: a half-made vault is not a vault.
	return putConfig(context.Background(), st, cfg)
}

func putConfig(ctx context.Context, st storage.Storage, cfg Config) error {
	b, _ := json.MarshalIndent(cfg, "", "  ")
	return st.Put(ctx, storage.Config, configName, append(b, '\n'))
}

func readConfig(ctx context.Context, st storage.Storage, dir string) (Config, error) {
	var cfg Config
	b, err := st.Get(ctx, storage.Config, configName)
	if errors.Is(err, storage.ErrNotExist) {
		// Without its config, a vault whose storage holds points is
		// damaged, not absent: cairn init must not be what it is told.
		if empty, serr := storageEmpty(ctx, st); serr == nil && !empty {
			return cfg, needsRepair("%s: %s is missing, and storage holds points", dir, configName)
		}
		return cfg, fmt.Errorf("%s: %w (create one with cairn init)", dir, ErrNotVault)
	}
	if err != nil {
		return cfg, err
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return cfg, needsRepair("%s: damaged %s: %v", dir, configName, err)
	}
	if cfg.Format < 1 {
		return cfg, needsRepair("%s: damaged %s: format %d", dir, configName, cfg.Format)
	}
	if cfg.Format > FormatVersion {
		return cfg, fmt.Errorf("%s: vault format %d is not supported by this cairn (knows 1 to %d)", dir, cfg.Format, FormatVersion)
	}
	if err := cfg.check(); err != nil {
		return cfg, needsRepair("%s: damaged %s: %v", dir, configName, err)
	}
	return cfg, nil
}

// Options tune an open vault. The zero value means "default".
type Options struct {
	// CacheSize bounds the decompressed-block cache in bytes.
	CacheSize int64
	// Clock returns the current time; time.Now when nil.
	Clock func() time.Time
	// Logf receives warnings; discarded when nil.
	Logf func(format string, args ...any)
	// Storage is where the vault's objects live; the vault's directory
	// (storage.Dir) when nil. The index stays in the directory.
	Storage storage.Storage
	// ReadOnly says the caller only reads. The vault still opens for
	// writing when it can (that is how a crashed writer's index is
	// recovered), and read-only when its filesystem is full or mounted
	// read-only, so points can be listed, verified and restored from it.
	ReadOnly bool
}

// Vault is an open vault. It is safe for concurrent use.
type Vault struct {
	dir   string
	cfg   Config
	codec chunkstore.Codec
	st    storage.Storage
	idx   *index.DB
	store *chunkstore.Store
	lock  *vaultLock
	clock func() time.Time
	logf  func(string, ...any)

	commitMu sync.Mutex    // serialises point ID choice and commit
	readOnly bool          // opened without write access
	fence    *fence        // gc beside backups and readers
	gcMu     sync.Mutex    // one gc at a time
	backups  resourceLocks // one backup of a resource at a time

	mu    sync.Mutex
	dirty bool // the index missed a write to storage: keep the session open

	used atomic.Int64 // bytes of packs, and of packs being written

	prefetches background // loads ahead of readers, which Close waits out
	loadOnce   sync.Once
	load       *loaders // read-ahead of every reader (readahead.go)
}

// background counts work that runs on its own goroutines, behind the
// calls that started it (a prefetch outlives a read that failed): Close
// refuses new work and waits for the rest, so none of it meets a closed
// index.
type background struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// enter reports whether work may start; leave must follow a true.
func (b *background) enter() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.wg.Add(1)
	return true
}

func (b *background) leave() { b.wg.Done() }

// close refuses new work and waits for the running work to end.
func (b *background) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.wg.Wait()
}

// The index lives beside the storage's objects; a repair builds the new
// one in indexNew and swaps it in.
const (
	indexDir = "index"
	indexNew = "index.new"
	indexOld = "index.old"
)

// Open opens the vault in dir. Only one process may have it open for
// writing. A vault whose index is missing, damaged or another vault's
// while its storage holds points is refused with ErrNeedsRepair: it is
// never taken for an empty one.
func Open(dir string, o Options) (*Vault, error) {
	ctx := context.Background()
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w (create one with cairn init)", dir, ErrNotVault)
		}
		return nil, err
	}
	st := o.Storage
	if st == nil {
		d, err := storage.NewDir(dir)
		if err != nil {
			return nil, err
		}
		d.KeepFree(index.WriteHeadroom)
		st = d
	}
	v := &Vault{dir: dir, st: st, clock: o.Clock, logf: o.Logf, fence: newFence()}
	if err := v.open(ctx, o); err != nil {
		v.closeAll()
		return nil, err
	}
	return v, nil
}

func (v *Vault) open(ctx context.Context, o Options) error {
	cfg, err := readConfig(ctx, v.st, v.dir)
	if err != nil {
		return err
	}
	v.cfg = cfg
	if v.codec, err = chunkstore.ParseCodec(cfg.Compression); err != nil {
		return err
	}
	if v.lock, err = lockVault(v.dir); err != nil {
		return err
	}
	if err := v.openIndex(ctx, o); err != nil {
		return err
	}
	v.store = chunkstore.New(v.st, v.idx, chunkstore.Options{CacheSize: o.CacheSize, ReadOnly: v.readOnly, Logf: v.logf})
	if err := v.recountUsed(); err != nil {
		return err
	}
	if v.readOnly {
		v.logf("%s: its filesystem is full or read-only; the vault is open for reading only", v.dir)
		return v.checkIndexComplete(ctx)
	}
	// We hold the vault: no writer is active, so leftovers of a crashed
	// backup or repair can go.
	if c, ok := v.st.(interface {
		CleanTemp(context.Context) (int, error)
	}); ok {
		if n, err := c.CleanTemp(ctx); err == nil && n > 0 {
			v.logf("removed %d unfinished object(s) left by an interrupted backup", n)
		}
	}
	os.RemoveAll(filepath.Join(v.dir, indexNew))
	os.RemoveAll(filepath.Join(v.dir, indexOld))
	if cfg.Format < FormatVersion {
		if err := v.upgrade(ctx); err != nil {
			return fmt.Errorf("%s: upgrade to vault format %d: %w", v.dir, FormatVersion, err)
		}
	}
	crashed, err := v.idx.SessionOpen()
	if err != nil {
		return v.indexError(err)
	}
	if crashed {
		// The last writer stopped without closing: what it committed to
		// storage may not be in the index yet. Storage wins.
		if err := v.reconcile(ctx); err != nil {
			return fmt.Errorf("%s: bring the index up to date with storage: %w", v.dir, err)
		}
	} else if err := v.checkIndexComplete(ctx); err != nil {
		return err
	}
	return v.indexError(v.idx.BeginSession())
}

// checkIndexComplete makes sure that an index closed cleanly knows every
// point record storage holds. A commit writes the record, then tells the
// index, and a writer whose index missed a write keeps its session open
// (the next open reconciles): so a record the index lacks after a clean
// close means the index lost records. Badger loses whole tables without
// a word when its MANIFEST is cut short (it deletes the tables the
// MANIFEST no longer names); such an index would show a vault with fewer
// points than it has.
func (v *Vault) checkIndexComplete(ctx context.Context) error {
	if v.cfg.Format < 2 {
		return nil // its points live in its index alone
	}
	known := map[string]bool{}
	keys, err := v.idx.PointKeys("")
	if err != nil {
		return v.indexError(err)
	}
	for _, k := range keys {
		known[recordName(k.Resource, k.ID)] = true
	}
	if err := v.idx.BadRecords(func(name, _ string) error {
		known[name] = true
		return nil
	}); err != nil {
		return v.indexError(err)
	}
	var missing []string
	if err := v.st.List(ctx, storage.Points, func(o storage.ObjectInfo) error {
		// A name that is no record's is verify's to report.
		if _, _, ok := splitRecordName(o.Name); ok && !known[o.Name] {
			missing = append(missing, o.Name)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("%s: list point records: %w", v.dir, err)
	}
	if len(missing) == 0 {
		return nil
	}
	sort.Strings(missing)
	more := ""
	if len(missing) > 1 {
		more = fmt.Sprintf(" and %d more", len(missing)-1)
	}
	return needsRepair("%s: the index lacks point %s%s that storage holds", v.dir, missing[0], more)
}

// openIndex opens the index, read-write when it can, and checks that it
// is this vault's.
func (v *Vault) openIndex(ctx context.Context, o Options) error {
	path := filepath.Join(v.dir, indexDir)
	io := index.Options{Logf: v.logf}
	idx, err := index.Open(path, io)
	if errors.Is(err, index.ErrNoWrite) && o.ReadOnly {
		io.ReadOnly = true
		idx, err = index.Open(path, io)
		v.readOnly = err == nil
	}
	switch {
	case errors.Is(err, index.ErrLocked):
		return fmt.Errorf("%s: %w", v.dir, ErrLocked)
	case errors.Is(err, index.ErrMissing):
		if _, serr := os.Stat(filepath.Join(v.dir, indexNew)); serr == nil {
			return needsRepair("%s: a repair of the index was interrupted", v.dir)
		}
		empty, serr := v.storageEmpty(ctx)
		if serr != nil {
			return serr
		}
		if !empty || v.cfg.Format < 2 {
			return needsRepair("%s: the index is missing, and storage holds points", v.dir)
		}
		// Nothing to lose: a vault without points gets a new index.
		io.Create = true
		if idx, err = index.Open(path, io); err != nil {
			return err
		}
		v.idx = idx
		return v.indexError(idx.SetVaultID(v.cfg.ID))
	case errors.Is(err, index.ErrCorrupt):
		return needsRepair("%s: %v", v.dir, err)
	case err != nil:
		return fmt.Errorf("%s: %w", v.dir, err)
	}
	v.idx = idx
	if v.cfg.Format < 2 {
		return nil // bound to the vault by the upgrade
	}
	id, err := idx.VaultID()
	switch {
	case errors.Is(err, index.ErrNotFound):
		empty, serr := v.storageEmpty(ctx)
		if serr != nil {
			return serr
		}
		if !empty {
			return needsRepair("%s: the index is empty, and storage holds points", v.dir)
		}
		if v.readOnly {
			return nil
		}
		return v.indexError(idx.SetVaultID(v.cfg.ID))
	case err != nil:
		return v.indexError(err)
	case id != v.cfg.ID:
		return needsRepair("%s: the index belongs to another vault", v.dir)
	}
	return nil
}

// indexError turns a damaged index's error into one that says to repair.
func (v *Vault) indexError(err error) error {
	if errors.Is(err, index.ErrCorrupt) {
		return needsRepair("%s: %v", v.dir, err)
	}
	return err
}

// storageEmpty reports whether storage holds no point and no pack.
func (v *Vault) storageEmpty(ctx context.Context) (bool, error) { return storageEmpty(ctx, v.st) }

func storageEmpty(ctx context.Context, st storage.Storage) (bool, error) {
	found := errors.New("found")
	for _, kind := range []storage.Kind{storage.Points, storage.Packs} {
		err := st.List(ctx, kind, func(storage.ObjectInfo) error { return found })
		if errors.Is(err, found) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
	return true, nil
}

// Close releases the vault. A vault whose index missed a write to
// storage keeps its session open, so the next open reconciles them.
func (v *Vault) Close() error {
	var err error
	if v.idx != nil && !v.readOnly {
		v.mu.Lock()
		dirty := v.dirty
		v.mu.Unlock()
		if !dirty {
			err = v.idx.EndSession()
		}
	}
	if cerr := v.closeAll(); err == nil {
		err = cerr
	}
	return err
}

func (v *Vault) closeAll() error {
	var err error
	v.prefetches.close()
	if v.store != nil {
		v.store.Close()
	}
	if v.idx != nil {
		err = v.idx.Close()
	}
	v.st.Close()
	v.lock.release()
	return err
}

// indexLags notes that storage has a change the index missed; the next
// open brings the index up to date.
func (v *Vault) indexLags(what string, err error) {
	v.mu.Lock()
	v.dirty = true
	v.mu.Unlock()
	v.logf("%s is in storage, but the index could not be updated (%v); the next open of the vault catches up", what, err)
}

// Dir returns the vault's directory.
func (v *Vault) Dir() string { return v.dir }

// readOnlyErr is what a write to a vault opened read-only returns. Only
// a daemon (or mount) meets it: a command that writes opens the vault
// for writing or fails. The vault stays read-only while it is open.
func (v *Vault) readOnlyErr() error {
	return fmt.Errorf("%s: %w: its filesystem was full or read-only when the daemon opened it; make room, then restart the daemon", v.dir, ErrReadOnly)
}

// Now is the time on the vault's clock (Options.Clock).
func (v *Vault) Now() time.Time { return v.clock() }

// Config returns the vault's settings.
func (v *Vault) Config() Config {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.cfg
}

// Store returns the vault's block store, for readers that need it raw.
func (v *Vault) Store() *chunkstore.Store { return v.store }
