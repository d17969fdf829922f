package index

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/ristretto/v2/z"
)

var (
	// ErrNotFound is returned for a key that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrCorrupt is returned when a stored record cannot be decoded, or
	// Badger fails (or panics) on damaged files.
	ErrCorrupt = errors.New("index damaged")
	// ErrLocked is returned when another process has the index open.
	ErrLocked = errors.New("index is in use by another process")
	// ErrNoWrite is returned when the index cannot be opened for writing
	// because its filesystem is full or read-only; it may still open
	// with Options.ReadOnly.
	ErrNoWrite = errors.New("index cannot be written")
	// ErrMissing is returned by Open when dir holds no index and
	// Options.Create is not set.
	ErrMissing = errors.New("index missing")
)

// Options tune the index. The zero value means "default" for every field.
type Options struct {
	// InMemory keeps everything in memory, for tests.
	InMemory bool
	// Create makes a new index when dir holds none. Without it, Open
	// fails with ErrMissing rather than hand out an empty index where one
	// was lost.
	Create bool
	// CacheSize bounds Badger's block and index caches together, in bytes.
	// Default 16 MiB.
	CacheSize int64
	// ReadOnly opens the index without the ability to write.
	ReadOnly bool
	// Logf receives Badger's warnings and errors; nil discards them.
	Logf func(format string, args ...any)
	// Lean trades a little write speed for memory: smaller memtables and
	// caches, for a bulk rebuild whose memory must stay bounded
	// however many records it writes.
	Lean bool
}

// memTableSize is the size of Badger's memtables, each a memory-mapped
// log that is flushed into a table of about its size when full.
const memTableSize = 8 << 20

// WriteHeadroom is the free space the index may need on its filesystem
// at any moment: a memtable being flushed into a table while the next
// memtable's log fills. Badger writes both through memory maps, where a
// full filesystem is no error but a SIGBUS that kills the process, so
// whatever shares the filesystem must leave this much free.
const WriteHeadroom = 2 * memTableSize

// DB is the vault's index.
type DB struct {
	db *badger.DB
}

// Exists reports whether dir holds an index (its manifest).
func Exists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, badger.ManifestFilename))
	return err == nil
}

// Open opens the index stored in dir, creating it when o.Create is set.
// Damaged files (a truncated table, a bad checksum) fail with ErrCorrupt,
// and so does a panic inside Badger.
func Open(dir string, o Options) (db *DB, err error) {
	if !o.InMemory && !Exists(dir) && (!o.Create || o.ReadOnly) {
		if _, statErr := os.Stat(dir); statErr != nil && !errors.Is(statErr, os.ErrNotExist) {
			return nil, statErr
		}
		return nil, fmt.Errorf("%w: %s holds no index", ErrMissing, dir)
	}
	if o.Create && !o.InMemory {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	}
	cache := o.CacheSize
	if cache <= 0 {
		cache = 16 << 20
	}
	// Badger's defaults (64 MiB memtables ×5, a 256 MiB block cache) cost
	// hundreds of MiB; our records are tiny and written in batches, so a
	// few small memtables and caches keep RSS low at little cost in speed.
	log := &openLogger{logf: o.Logf}
	opts := badger.DefaultOptions(dir).
		WithInMemory(o.InMemory).
		WithReadOnly(o.ReadOnly).
		WithLogger(badgerLogger{log.print}).
		WithMemTableSize(memTableSize).
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
		// A flipped bit in a table is an error, never a wrong location or
		// a wrong point size: every block is checked as it is read (and
		// each table's index when it opens; see checkTables).
		WithChecksumVerificationMode(options.OnBlockRead).
		WithNumCompactors(2).
		WithNumGoroutines(2).
		WithDetectConflicts(false).
		WithMetricsEnabled(false)
	// Badger builds each table in a buffer of twice its size, and its
	// tables double in size at every level: a large index would hold
	// builders of 64 MiB and more. One size at every level bounds them.
	opts.TableSizeMultiplier = 1
	if o.Lean {
		opts = opts.WithMemTableSize(2 << 20).WithValueThreshold(256 << 10).WithBaseTableSize(2 << 20).
			WithBlockCacheSize(4 << 20).WithIndexCacheSize(2 << 20)
	}
	if o.InMemory {
		opts = opts.WithDir("").WithValueDir("")
	} else {
		removeEmptyLogs(dir)
	}
	if !o.InMemory && !o.ReadOnly {
		if err := checkRoom(dir); err != nil {
			return nil, err
		}
	}
	if !o.InMemory {
		if err := checkTables(dir, o.ReadOnly); err != nil {
			return nil, err
		}
	}
	bdb, panicked, err := openBadger(opts)
	if failed := log.opened(err == nil); failed != "" && panicked {
		// Badger logs why its open failed, then often panics while it
		// cleans up: its message says more than the panic's.
		err = errors.New(failed)
	}
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
		case errors.Is(err, os.ErrPermission):
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s", ErrCorrupt, oneLine(msg))
	}
	if !o.InMemory && !o.ReadOnly {
		tightenModes(dir)
	}
	return &DB{db: bdb}, nil
}

// checkRoom refuses to open the index for writing on a filesystem with
// less than WriteHeadroom free (or an eighth of its size, if less):
// Badger writes its logs and tables through memory maps, and a write to
// a mapped page that a full filesystem cannot back kills the process
// with SIGBUS, leaving a table half written. Even an open for reading
// writes (its session, a memtable flushed at close). Read-only, the
// index opens on a full filesystem.
func checkRoom(dir string) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		if err := syscall.Statfs(filepath.Dir(dir), &st); err != nil {
			return nil // the open will say what is wrong
		}
	}
	bs := int64(st.Bsize)
	need := min(int64(WriteHeadroom), int64(st.Blocks)*bs/8)
	if free := int64(st.Bavail) * bs; free < need {
		return fmt.Errorf("%w: its filesystem is full (%d bytes free; the index needs %d to write)", ErrNoWrite, free, need)
	}
	return nil
}

// openBadger opens Badger, turning a panic into ErrCorrupt.
func openBadger(opts badger.Options) (bdb *badger.DB, panicked bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			bdb, panicked, err = nil, true, fmt.Errorf("%w: %s", ErrCorrupt, oneLine(fmt.Sprint(r)))
		}
	}()
	bdb, err = badger.Open(opts)
	if err != nil && bdb != nil {
		bdb.Close()
	}
	return bdb, false, err
}

// openLogger holds Badger's messages back until its open is over: a
// failed open's message becomes the error, on one line, instead of a
// warning before it; a successful open's messages are passed on.
type openLogger struct {
	mu     sync.Mutex
	logf   func(string, ...any)
	open   bool
	held   []string
	failed string // why Badger's open failed, as it logged it
}

func (l *openLogger) print(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.mu.Lock()
	if !l.open {
		if why, ok := strings.CutPrefix(msg, "index: Received err: "); ok {
			l.failed = strings.TrimSuffix(oneLine(why), ". Cleaning up...")
		} else {
			l.held = append(l.held, msg)
		}
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	if l.logf != nil {
		l.logf("%s", msg)
	}
}

// opened ends the open: it passes the held messages on if ok, and
// returns why the open failed if Badger said.
func (l *openLogger) opened(ok bool) string {
	l.mu.Lock()
	l.open = true
	held, failed := l.held, l.failed
	l.held = nil
	l.mu.Unlock()
	if !ok {
		return failed
	}
	for _, m := range held {
		if l.logf != nil {
			l.logf("%s", m)
		}
	}
	return ""
}

// checkTables opens each table file the way Badger will, but here, where
// a panic can be caught, and verifies its checksums: Badger opens tables
// on goroutines of its own, and a truncated table panics there, taking
// the process down with a long trace; a table whose index fails its
// checksum it skips without a word, losing its records; and its
// iterators end quietly at a block that fails its checksum, so a scan
// would list part of the points as if that were all. Each of these is
// ErrCorrupt here. Tables never change once written, so each is verified
// once: those verified are listed, with size and time, in a file beside
// them (a table rewritten in place has a new time and is checked again).
func checkTables(dir string, readOnly bool) error {
	paths, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil {
		return err
	}
	verified := readVerified(dir)
	live, known := liveTables(dir)
	changed := false
	for _, p := range paths {
		if known && !live[filepath.Base(p)] {
			// A table the MANIFEST never took in: a compaction or flush
			// killed while writing it. Badger deletes it at open; it is
			// no part of the index, whole or not.
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		key := fmt.Sprintf("%s %d %d", filepath.Base(p), st.Size(), st.ModTime().UnixNano())
		if verified[key] {
			continue
		}
		if err := checkTable(p); err != nil {
			return fmt.Errorf("%w: table %s: %s", ErrCorrupt, filepath.Base(p), oneLine(err.Error()))
		}
		verified[key] = true
		changed = true
	}
	if changed && !readOnly {
		writeVerified(dir, verified, paths)
	}
	return nil
}

// liveTables names the tables the MANIFEST holds; known is false when it
// cannot be read, and every table is then checked.
func liveTables(dir string) (live map[string]bool, known bool) {
	f, err := os.Open(filepath.Join(dir, badger.ManifestFilename))
	if err != nil {
		return nil, false
	}
	defer f.Close()
	m, _, err := replayManifest(f)
	if err != nil {
		return nil, false
	}
	live = map[string]bool{}
	for id := range m.Tables {
		live[fmt.Sprintf("%06d.sst", id)] = true
	}
	return live, true
}

// replayManifest reads a MANIFEST; Badger panics on some damage.
func replayManifest(f *os.File) (m badger.Manifest, n int64, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: MANIFEST: %v", ErrCorrupt, r)
		}
	}()
	return badger.ReplayManifestFile(f, 0, badger.DefaultOptions(""))
}

// verifiedName lists the tables checked whole, one "name size mtime" a line.
const verifiedName = "VERIFIED"

func readVerified(dir string) map[string]bool {
	out := map[string]bool{}
	b, err := os.ReadFile(filepath.Join(dir, verifiedName))
	if err != nil {
		return out
	}
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" {
			out[l] = true
		}
	}
	return out
}

// writeVerified keeps the entries of tables that still exist. Losing the
// file costs a check of every table at the next open, nothing more.
func writeVerified(dir string, verified map[string]bool, paths []string) {
	exists := map[string]bool{}
	for _, p := range paths {
		exists[filepath.Base(p)] = true
	}
	var b strings.Builder
	for k := range verified {
		if name, _, _ := strings.Cut(k, " "); exists[name] {
			b.WriteString(k + "\n")
		}
	}
	tmp := filepath.Join(dir, verifiedName+".tmp")
	if os.WriteFile(tmp, []byte(b.String()), 0o600) == nil {
		os.Rename(tmp, filepath.Join(dir, verifiedName))
	}
}

// CheckTables verifies every table of the open index whole, as the
// first open after a table is written does. An open trusts a table it
// verified before at the same size and time, so bit rot since then (which
// keeps the time) makes Badger's reads of the rotten block end quietly, as
// if its keys were not there: CheckTables finds it. A table that fails is
// struck from the verified list, so that the next open refuses the index
// too. Only the tables the index uses are checked, never one Badger is
// still writing; those that compaction removes meanwhile are skipped.
func (d *DB) CheckTables() (err error) {
	defer recoverBadger(&err)
	opts := d.db.Opts()
	if opts.InMemory {
		return nil
	}
	for _, ti := range d.db.Tables() {
		p := table.NewFilename(ti.ID, opts.Dir)
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := checkTable(p); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if !opts.ReadOnly {
				unverify(opts.Dir, filepath.Base(p))
			}
			return fmt.Errorf("%w: table %s: %s", ErrCorrupt, filepath.Base(p), oneLine(err.Error()))
		}
	}
	return nil
}

// unverify strikes a table from the verified list.
func unverify(dir, table string) {
	verified := readVerified(dir)
	for k := range verified {
		if name, _, _ := strings.Cut(k, " "); name == table {
			delete(verified, k)
		}
	}
	paths, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	writeVerified(dir, verified, paths)
}

func checkTable(path string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	mf, err := z.OpenMmapFile(path, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	// OpenTable closes mf when it fails. On success the table is left to
	// the garbage collector and only the file is closed: the table's
	// DecrRef would delete the file.
	if _, err := table.OpenTable(mf, table.Options{ReadOnly: true, ChkMode: options.OnTableRead, Compression: options.None}); err != nil {
		return err
	}
	return mf.Close(-1)
}

// recoverBadger turns a panic inside Badger (it panics on some damaged
// files) into ErrCorrupt.
func recoverBadger(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: %s", ErrCorrupt, oneLine(fmt.Sprint(r)))
	}
}

// oneLine keeps the first line of Badger's messages, which may carry a
// stack trace.
func oneLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// removeEmptyLogs deletes memtable and value logs of length zero.
// Badger creates a log, then sizes it; a process killed between the two
// leaves an empty file, which the next open fails on ("while opening
// memtables ... Create a new file", or a panic for a value log), the
// read-only open of a read command included. An empty log holds no
// entries, so removing it loses nothing. It is done only under Badger's
// own directory lock (flock on the folder): a log that another process
// holding the index is sizing is never touched.
func removeEmptyLogs(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	defer d.Close()
	if syscall.Flock(int(d.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		return // held: Badger's open says so
	}
	defer syscall.Flock(int(d.Fd()), syscall.LOCK_UN)
	ents, err := d.ReadDir(-1)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".mem") && !strings.HasSuffix(e.Name(), ".vlog") {
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
func (d *DB) Close() (err error) {
	defer recoverBadger(&err)
	return d.db.Close()
}

// Sync makes every write so far durable.
func (d *DB) Sync() (err error) {
	defer recoverBadger(&err)
	return d.db.Sync()
}

// The helpers below are the only places that call into Badger after
// Open, so each turns a panic on damaged files into ErrCorrupt.

func (d *DB) view(fn func(txn *badger.Txn) error) (err error) {
	defer recoverBadger(&err)
	return d.db.View(fn)
}

func (d *DB) update(fn func(txn *badger.Txn) error) (err error) {
	defer recoverBadger(&err)
	if err := d.db.Update(fn); err != nil {
		return err
	}
	return d.db.Sync()
}

// batch writes sets (and deletes, for nil values) in one WriteBatch and
// syncs.
func (d *DB) batch(fn func(wb *badger.WriteBatch) error) (err error) {
	defer recoverBadger(&err)
	wb := d.db.NewWriteBatch()
	defer wb.Cancel()
	if err := fn(wb); err != nil {
		return err
	}
	if err := wb.Flush(); err != nil {
		return err
	}
	return d.db.Sync()
}

// get copies the value of key out, or returns ErrNotFound.
func (d *DB) get(key []byte) ([]byte, error) {
	var out []byte
	err := d.view(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
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

// scan iterates keys with prefix; v is nil unless values is set. k and v
// are only valid during fn.
func (d *DB) scan(prefix []byte, values bool, fn func(k, v []byte) error) error {
	return d.view(func(txn *badger.Txn) error {
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

// dropPrefix deletes every key with prefix.
func (d *DB) dropPrefix(prefix []byte) (err error) {
	defer recoverBadger(&err)
	if err := d.db.DropPrefix(prefix); err != nil {
		return err
	}
	return d.db.Sync()
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
