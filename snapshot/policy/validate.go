package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Validate is Check plus the checks against the machine the daemon runs
// on, so that a policy fails when it is set, not at its first slot:
// every source exists and is a regular file (raw or qcow2 image) or a
// block device the daemon may read, and every hook's program exists and
// is executable, a bare name being looked up in searchPath (a PATH-style
// list: the PATH the hooks will run with) as the hook runner does.
// A user's mistake wraps ErrInvalid; an I/O error looking does not.
func (p *Policy) Validate(searchPath string) error {
	if err := p.Check(); err != nil {
		return err
	}
	for _, s := range p.Sources {
		if err := checkSourceFile(s.Path); err != nil {
			return err
		}
	}
	for _, h := range []struct {
		what string
		argv []string
	}{{"pre hook", p.PreHook}, {"post hook", p.PostHook}} {
		if len(h.argv) == 0 {
			continue
		}
		if _, err := lookPath(h.argv[0], searchPath); err != nil {
			var np *noProgram
			if errors.As(err, &np) {
				return invalidf("%s %v", h.what, err)
			}
			return fmt.Errorf("%s %v", h.what, err)
		}
	}
	return nil
}

func checkSourceFile(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return invalidf("source %s: no such file or device", path)
	case errors.Is(err, fs.ErrPermission):
		return invalidf("source %s: permission denied", path)
	case err != nil:
		return fmt.Errorf("source %s: %v", path, pathCause(err))
	}
	m := fi.Mode()
	switch {
	case m.IsDir():
		return invalidf("source %s: a directory, not a disk image or block device", path)
	case m&fs.ModeCharDevice != 0:
		return invalidf("source %s: a character device, not a block device", path)
	case !m.IsRegular() && m&fs.ModeDevice == 0:
		return invalidf("source %s: not a disk image file or block device", path)
	}
	if err := unix.Access(path, unix.R_OK); err != nil {
		return invalidf("source %s: not readable by this user (uid %d)", path, os.Geteuid())
	}
	return nil
}

// noProgram is a hook program missing or not executable: the user's
// mistake, named in one line.
type noProgram struct {
	msg     string
	missing bool // no such file, as opposed to one that cannot run
}

func (e *noProgram) Error() string { return e.msg }

// lookPath resolves a hook's argv[0] as exec.LookPath does, but in
// searchPath rather than this process's PATH: a name with a slash is
// taken as it is (it must be absolute), a bare name is searched in the
// absolute directories of searchPath (relative ones are skipped, as
// exec.LookPath refuses them). The result is a regular file with an
// executable bit that this user may execute. A program missing or not
// executable is a *noProgram.
func lookPath(name, searchPath string) (string, error) {
	if filepath.Base(name) != name || name == "." || name == ".." {
		if !filepath.IsAbs(name) {
			return "", &noProgram{msg: name + ": give an absolute path or a command name found on PATH"}
		}
		if err := checkExecutable(name); err != nil {
			return "", prefixed(name+": ", err)
		}
		return name, nil
	}
	var first error
	for _, dir := range filepath.SplitList(searchPath) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		err := checkExecutable(p)
		if err == nil {
			return p, nil
		}
		var np *noProgram
		if first == nil && !(errors.As(err, &np) && np.missing) {
			first = prefixed(name+": not found on PATH, and "+p+" is ", err)
		}
	}
	switch {
	case first != nil:
		return "", first
	case searchPath == "":
		return "", &noProgram{msg: name + ": no PATH to look for it in (give an absolute path)", missing: true}
	}
	return "", &noProgram{msg: name + ": not found on PATH (" + searchPath + ")", missing: true}
}

// prefixed puts prefix before a *noProgram's message, or wraps another
// error.
func prefixed(prefix string, err error) error {
	var np *noProgram
	if errors.As(err, &np) {
		return &noProgram{msg: prefix + np.msg, missing: np.missing}
	}
	return fmt.Errorf("%s%w", prefix, err)
}

// checkExecutable refuses a path that is not a regular file this user
// may execute, with a *noProgram (or the I/O error of looking).
func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &noProgram{msg: "no such file", missing: true}
	case errors.Is(err, fs.ErrPermission):
		return &noProgram{msg: "not accessible (permission denied)"}
	case err != nil:
		return pathCause(err)
	case fi.IsDir():
		return &noProgram{msg: "a directory"}
	case !fi.Mode().IsRegular():
		return &noProgram{msg: "not a regular file"}
	case fi.Mode().Perm()&0o111 == 0:
		return &noProgram{msg: fmt.Sprintf("not executable (mode %04o)", fi.Mode().Perm())}
	}
	if err := unix.Access(path, unix.X_OK); err != nil {
		return &noProgram{msg: fmt.Sprintf("not executable by this user (uid %d)", os.Geteuid())}
	}
	return nil
}

// pathCause strips the path an *fs.PathError repeats.
func pathCause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
