package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// soakDuration is how long TestSoak runs: CAIRN_SOAK (a Go duration; make
// soak DURATION=30m sets it), else 2 minutes, and 20 s with -short.
func soakDuration(t *testing.T) time.Duration {
	if s := os.Getenv("CAIRN_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("CAIRN_SOAK=%q: %v", s, err)
		}
		return d
	}
	if testing.Short() {
		return 20 * time.Second
	}
	return 2 * time.Minute
}

// soak is the state of TestSoak: the vault, the daemon serving it, the
// sources, and the truth: the SHA-256 each committed point must restore
// to.
type soak struct {
	t       *testing.T
	dir     string
	vault   string
	mnt     string
	rnd     *rand.Rand
	d       *runningDaemon
	sources map[string]string   // resource → its image
	expect  map[string]string   // point → SHA-256 of its disk
	history map[string][]string // resource → SHA-256 of each of its disk's versions

	cycles, kills, clientKills, localKills, ops, checked int
}

// TestSoak keeps a daemon busy with random work: backups of three
// resources after random changes to their disks, deletes, prunes, gc
// with compaction, reads of whole disks through the mount, and exports.
// At random moments it SIGKILLs the daemon in the middle of a command,
// or a client, or a command that opened the vault itself. After every
// kill it starts a daemon again and checks that the first open
// succeeds, verify --data passes, every committed point restores to the
// bytes it was made from, and that after gc no space leaks (the packs on
// disk are exactly what the vault counts, and a second gc frees
// nothing). make soak DURATION=30m runs it long.
func TestSoak(t *testing.T) {
	t.Parallel() // long and self-contained: overlaps the other long tests
	dur := soakDuration(t)
	dir := t.TempDir()
	seed := time.Now().UnixNano()
	if s := os.Getenv("CAIRN_SOAK_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	t.Logf("seed %d (CAIRN_SOAK_SEED=%d reproduces the choices)", seed, seed)
	s := &soak{t: t, dir: dir, vault: filepath.Join(dir, "vault"), mnt: filepath.Join(dir, "mnt"),
		rnd: rand.New(rand.NewSource(seed)), sources: map[string]string{}, expect: map[string]string{}, history: map[string][]string{}}
	t.Cleanup(func() {
		if t.Failed() { // what a long run got through before it stopped
			t.Logf("soak stopped after %d cycles, %d operations, %d daemon kills, %d client kills, %d kills of commands on the vault, %d point restores checked",
				s.cycles, s.ops, s.kills, s.clientKills, s.localKills, s.checked)
		}
	})
	mustCairn(t, s.vault, "init", "--chunk-size", "64K")
	os.Mkdir(s.mnt, 0o755)
	for i, r := range []string{"web", "db", "mail"} {
		p := filepath.Join(dir, r+".img")
		b := make([]byte, (4+2*i)<<20)
		s.rnd.Read(b[:len(b)/2]) // the rest stays zero: holes
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		s.sources[r] = p
	}
	s.start()
	end := time.Now().Add(dur)
	for time.Now().Before(end) {
		s.cycle()
	}
	s.d.stop(t)
	t.Logf("soak: %s, %d cycles, %d operations, %d daemon kills, %d client kills, %d kills of commands on the vault, %d point restores checked",
		dur, s.cycles, s.ops, s.kills, s.clientKills, s.localKills, s.checked)
}

func (s *soak) start() {
	s.t.Helper()
	s.d = startDaemon(s.t, s.vault, "--mount", s.mnt)
}

// cycle runs a few operations, then kills something at a random moment
// of one more, then checks the vault.
func (s *soak) cycle() {
	s.cycles++
	for n := 1 + s.rnd.Intn(4); n > 0; n-- {
		s.op(nil)
	}
	switch k := s.rnd.Intn(10); {
	case k < 6: // the daemon, in the middle of a command
		s.kills++
		s.op(func(*exec.Cmd) {
			s.d.cmd.Process.Kill()
			<-s.d.done // Wait has returned: stop() has nothing more to do
		})
		s.start()
	case k < 8: // a client: its job is cancelled by the daemon
		s.clientKills++
		s.op(killClient)
	default: // a command that owns the vault itself
		s.localKills++
		s.d.stop(s.t)
		s.backup(true, killClient)
		s.start()
	}
	s.check()
}

// killClient kills a command, if one still runs.
func killClient(c *exec.Cmd) {
	if c != nil {
		c.Process.Kill()
	}
}

// op runs one random operation; kill, when given, is called at a random
// moment while its command runs.
func (s *soak) op(kill func(*exec.Cmd)) {
	s.ops++
	points := s.points()
	switch k := s.rnd.Intn(10); {
	case k < 4 || len(points) == 0:
		s.backup(false, kill)
	case k < 5:
		s.run(kill, "delete", points[s.rnd.Intn(len(points))])
	case k < 6:
		s.run(kill, "prune", "--keep-last", strconv.Itoa(2+s.rnd.Intn(3)))
	case k < 7:
		s.run(kill, "gc", "--threshold", "0.8")
	case k < 9 && s.d.cmd.ProcessState == nil:
		s.readMounted(points[s.rnd.Intn(len(points))], kill)
	default:
		p := points[s.rnd.Intn(len(points))]
		out := filepath.Join(s.dir, "export.raw")
		os.Remove(out)
		if s.run(kill, "export", p, "--format", "raw", "-o", out) == nil && kill == nil {
			if got := sumFile(s.t, out); got != s.expect[p] {
				s.t.Fatalf("export of %s differs from what it was made of", p)
			}
		}
	}
}

// backup changes a resource's disk a little, then backs it up; a new
// point, however the command ended, must hold what the disk held.
func (s *soak) backup(local bool, kill func(*exec.Cmd)) {
	names := []string{"web", "db", "mail"}
	r := names[s.rnd.Intn(len(names))]
	f, err := os.OpenFile(s.sources[r], os.O_RDWR, 0)
	if err != nil {
		s.t.Fatal(err)
	}
	st, _ := f.Stat()
	for n := s.rnd.Intn(6); n > 0; n-- {
		b := make([]byte, 4096+s.rnd.Intn(200<<10))
		s.rnd.Read(b)
		f.WriteAt(b, s.rnd.Int63n(st.Size()-int64(len(b))))
	}
	f.Close()
	sum := sumFile(s.t, s.sources[r])
	s.history[r] = append(s.history[r], sum)
	before := s.points()
	ended := 0
	if !local && kill != nil {
		_, ended = s.jobs()
	}
	// With local, no daemon runs: the command opens the vault itself.
	s.run(kill, "backup", "--name", r, "vda="+s.sources[r])
	if !local && s.d.cmd.ProcessState != nil {
		return // the daemon was killed; check() looks once it is back
	}
	if !local && kill != nil {
		// A killed client's job may still be committing in the daemon:
		// its point must be adopted now, before the source changes again.
		s.settle(ended)
	}
	s.adopt(before, r, sum)
}

// settle waits until the daemon runs no job and has ended more than
// ended backup jobs, or, when the killed client's request never reached
// it, for two seconds with none running: a request still in the
// socket's buffer may start its job after the client died.
func (s *soak) settle(ended int) {
	s.t.Helper()
	quiet := time.Now()
	for deadline := time.Now().Add(time.Minute); ; {
		running, backups := s.jobs()
		switch {
		case running > 0:
			quiet = time.Now()
		case backups > ended || time.Since(quiet) > 2*time.Second:
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the daemon still runs a job a minute after its client was killed")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// jobs counts the daemon's running jobs and its ended backup jobs.
func (s *soak) jobs() (running, backups int) {
	var jobs []struct{ Kind, State string }
	mustJSON(s.t, mustCairn(s.t, s.vault, "jobs", "--all", "--json"), &jobs)
	for _, j := range jobs {
		if j.State == "running" {
			running++
		} else if j.Kind == "backup" {
			backups++
		}
	}
	return running, backups
}

// adopt gives every point of resource r not listed before the source's
// SHA-256.
func (s *soak) adopt(before []string, r, sum string) {
	for _, p := range s.points() {
		if strings.HasPrefix(p, r+"@") && !slices.Contains(before, p) {
			if _, known := s.expect[p]; !known {
				s.expect[p] = sum
			}
		}
	}
}

// run runs a cairn command, killing it (or what kill kills) at a random
// moment when kill is given. Its error, if any, is returned; with no
// kill, a failure fails the test.
func (s *soak) run(kill func(*exec.Cmd), args ...string) error {
	s.t.Helper()
	cmd := exec.Command(cairnBin, append(args, "--quiet")...)
	cmd.Env = append(os.Environ(), "CAIRN_VAULT="+s.vault)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if kill != nil {
		select {
		case err := <-done:
			kill(nil) // it ended before the moment came: kill what else is to die
			return err
		case <-time.After(time.Duration(s.rnd.Intn(400)) * time.Millisecond):
			kill(cmd)
		}
	}
	err := <-done
	if err != nil && kill == nil {
		s.t.Fatalf("cairn %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return err
}

// readMounted reads a point's whole disk through the mount.
func (s *soak) readMounted(point string, kill func(*exec.Cmd)) {
	res, id, _ := strings.Cut(point, "@")
	path := filepath.Join(s.mnt, res, id, "vda.raw")
	if kill != nil {
		// A killer during a read: the daemon dies under the reader (a
		// read of a dead mount fails, and is not compared), or the
		// reader (cat) dies.
		cmd := exec.Command("cat", path)
		if err := cmd.Start(); err != nil {
			s.t.Fatal(err)
		}
		time.Sleep(time.Duration(s.rnd.Intn(200)) * time.Millisecond)
		kill(cmd)
		cmd.Process.Kill()
		cmd.Wait()
		return
	}
	if got := sumFile(s.t, path); got != s.expect[point] {
		s.t.Fatalf("%s read through the mount differs from what it was made of", point)
	}
}

// points lists the committed points, through the daemon when one runs.
func (s *soak) points() []string {
	var ps []struct{ Point string }
	mustJSON(s.t, mustCairn(s.t, s.vault, "points", "--json"), &ps)
	var out []string
	for _, p := range ps {
		out = append(out, p.Point)
	}
	return out
}

// check is what must hold after any kill.
func (s *soak) check() {
	t := s.t
	t.Helper()
	points := s.points()
	for _, p := range points {
		if _, ok := s.expect[p]; !ok {
			// Made by a backup whose daemon was killed: the source has
			// not changed since.
			res, _, _ := strings.Cut(p, "@")
			s.expect[p] = sumFile(t, s.sources[res])
		}
	}
	for p := range s.expect {
		if !slices.Contains(points, p) {
			delete(s.expect, p) // deleted or pruned, maybe by a killed command
		}
	}
	if r := cairn(t, s.vault, "verify", "--data"); r.code != 0 {
		t.Fatalf("verify --data after cycle %d: exit %d\n%s%s\ndaemon:\n%s", s.cycles, r.code, r.stdout, r.stderr, s.d.log)
	}
	for _, p := range points {
		out := filepath.Join(s.dir, "restore.img")
		os.Remove(out)
		mustCairn(t, s.vault, "restore", p, out)
		if got := sumFile(t, out); got != s.expect[p] {
			res, _, _ := strings.Cut(p, "@")
			h := s.history[res]
			t.Fatalf("after cycle %d, %s restores differently from what it was made of: it holds version %d of the %d its source had (-1: none of them), expected version %d",
				s.cycles, p, slices.Index(h, got), len(h), slices.Index(h, s.expect[p]))
		}
		s.checked++
	}
	// No space leaks: after gc, the packs on disk are what the vault
	// counts, and a second gc finds nothing.
	mustCairn(t, s.vault, "gc", "--threshold", "0.8")
	var gc struct {
		BlocksFreed  int `json:"blocks_freed"`
		PacksDeleted int `json:"packs_deleted"`
	}
	mustJSON(t, mustCairn(t, s.vault, "gc", "--dry-run", "--json"), &gc)
	if gc.BlocksFreed != 0 || gc.PacksDeleted != 0 {
		t.Fatalf("after gc, another gc would free more: %+v", gc)
	}
	var st struct {
		Used int64 `json:"used"`
	}
	mustJSON(t, mustCairn(t, s.vault, "stats", "--json"), &st)
	if onDisk, strays := packFiles(t, s.vault); onDisk != st.Used || len(strays) > 0 {
		t.Fatalf("after cycle %d: packs on disk %d bytes, the vault counts %d; files that are no packs: %q", s.cycles, onDisk, st.Used, strays)
	}
}

// packFiles sums the sizes of every file in the vault's packs folder,
// and lists those that are not packs (a writer's leftovers).
func packFiles(t *testing.T, vault string) (n int64, strays []string) {
	filepath.WalkDir(filepath.Join(vault, "packs"), func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		if !strings.HasSuffix(e.Name(), ".pack") {
			strays = append(strays, e.Name())
		}
		if i, err := e.Info(); err == nil {
			n += i.Size()
		}
		return nil
	})
	return n, strays
}

func sumFile(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
