package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/chunkstore"
	"github.com/cairn-backup/cairn/index"
)

// FormatVersion is the vault layout this code writes and reads.
const FormatVersion = 1

// Default settings of a new vault.
const (
	DefaultBlockSize   = 256 << 10
	DefaultCompression = "zstd"
	MinBlockSize       = 4 << 10
	MaxBlockSize       = 4 << 20
)

var (
	ErrNotVault       = errors.New("not a cairn vault")
	ErrAlreadyVault   = errors.New("vault already initialized")
	ErrNoPoint        = errors.New("no such point")
	ErrAmbiguous      = errors.New("ambiguous point")
	ErrBadName        = errors.New("invalid name")
	ErrLocked         = errors.New("vault is in use by another process")
	ErrTargetTooSmall = errors.New("restore target too small")
	// ErrSourceChanged marks a backup source that changed size or
	// allocation while it was read: the backup fails, nothing is
	// committed.
	ErrSourceChanged = errors.New("the source changed while it was read")
	// ErrBadSetting marks a vault setting that is out of range or unknown.
	ErrBadSetting = errors.New("invalid vault setting")
)

// settingError is a bad setting, said plainly; it is ErrBadSetting.
type settingError struct{ msg string }

func (e settingError) Error() string        { return e.msg }
func (e settingError) Is(target error) bool { return target == ErrBadSetting }

// Config is the vault's cairn.json.
type Config struct {
	Format      int       `json:"format"`
	BlockSize   int       `json:"block_size"`
	Compression string    `json:"compression"`
	Created     time.Time `json:"created"`
}

const configName = "cairn.json"

// Init creates a vault in dir, which must not exist or be empty.
func Init(dir string, cfg Config, now time.Time) error {
	if cfg.BlockSize == 0 {
		cfg.BlockSize = DefaultBlockSize
	}
	if cfg.Compression == "" {
		cfg.Compression = DefaultCompression
	}
	if cfg.BlockSize < MinBlockSize || cfg.BlockSize > MaxBlockSize || cfg.BlockSize&(cfg.BlockSize-1) != 0 {
		return settingError{fmt.Sprintf("chunk size %d: must be a power of two from 4 KiB to 4 MiB", cfg.BlockSize)}
	}
	if _, err := chunkstore.ParseCodec(cfg.Compression); err != nil {
		return settingError{err.Error()}
	}
	cfg.Format = FormatVersion
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
	for _, sub := range []string{"index", "packs"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			return err
		}
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	// The config goes in last: a half-made vault is not a vault.
	return writeFileAtomic(filepath.Join(dir, configName), append(b, '\n'))
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Options tune an open vault. The zero value means "default".
type Options struct {
	// CacheSize bounds the decompressed-block cache in bytes.
	CacheSize int64
	// Clock returns the current time; time.Now when nil.
	Clock func() time.Time
	// Logf receives warnings; discarded when nil.
	Logf func(format string, args ...any)
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
	idx   *index.DB
	be    *chunkstore.DirBackend
	store *chunkstore.Store
	clock func() time.Time
	logf  func(string, ...any)

	commitMu sync.Mutex // serialises point ID choice and commit
	readOnly bool       // opened without write access
}

// ErrReadOnly is returned by writes to a vault opened read-only.
var ErrReadOnly = errors.New("vault is open read-only")

// Open opens the vault in dir. Only one process may have it open.
func Open(dir string, o Options) (*Vault, error) {
	b, err := os.ReadFile(filepath.Join(dir, configName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w (create one with cairn init)", dir, ErrNotVault)
	}
	if err != nil {
		return nil, err
	}
	var cfg Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("%s: damaged %s: %v", dir, configName, err)
	}
	if cfg.Format != FormatVersion {
		return nil, fmt.Errorf("%s: vault format %d is not supported by this cairn (knows %d)", dir, cfg.Format, FormatVersion)
	}
	codec, err := chunkstore.ParseCodec(cfg.Compression)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	if cfg.BlockSize < MinBlockSize || cfg.BlockSize > MaxBlockSize {
		return nil, fmt.Errorf("%s: damaged %s: block size %d", dir, configName, cfg.BlockSize)
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	idx, err := index.Open(filepath.Join(dir, "index"), index.Options{Logf: o.Logf})
	readOnly := false
	if errors.Is(err, index.ErrNoWrite) && o.ReadOnly {
		idx, err = index.Open(filepath.Join(dir, "index"), index.Options{Logf: o.Logf, ReadOnly: true})
		readOnly = err == nil
	}
	if errors.Is(err, index.ErrLocked) {
		return nil, fmt.Errorf("%s: %w", dir, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	be, err := chunkstore.NewDirBackend(filepath.Join(dir, "packs"))
	if err != nil {
		idx.Close()
		return nil, err
	}
	// We hold the index lock, so no writer is active: leftovers of a
	// crashed backup can go.
	if readOnly {
		o.Logf("%s: its filesystem is full or read-only; the vault is open for reading only", dir)
	} else if n, err := be.CleanTemp(); err == nil && n > 0 {
		o.Logf("removed %d unfinished pack(s) left by an interrupted backup", n)
	}
	return &Vault{
		dir: dir, cfg: cfg, codec: codec, idx: idx, be: be,
		store: chunkstore.New(be, idx, chunkstore.Options{CacheSize: o.CacheSize}),
		clock: o.Clock, logf: o.Logf, readOnly: readOnly,
	}, nil
}

// Close releases the vault.
func (v *Vault) Close() error {
	v.store.Close()
	return v.idx.Close()
}

// Dir returns the vault's directory.
func (v *Vault) Dir() string { return v.dir }

// Config returns the vault's settings.
func (v *Vault) Config() Config { return v.cfg }

// Store returns the vault's block store, for readers that need it raw.
func (v *Vault) Store() *chunkstore.Store { return v.store }
