package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// runXFSProto writes to stdout a mkfs.xfs protofile (mkfs.xfs -p) that
// describes the tree at DIR, so that mkfs.xfs populates an image with it
// without a mount. See xfsProto for what a protofile cannot say.
func runXFSProto(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: xfsproto DIR")
	}
	dir, err := filepath.Abs(args[0])
	if err != nil {
		return err
	}
	w := bufio.NewWriter(os.Stdout)
	copies, err := xfsProto(w, dir)
	if err != nil {
		return err
	}
	if copies > 0 {
		fmt.Fprintf(os.Stderr, "benchtool xfsproto: %d hard links written as separate copies (a protofile has no hard links)\n", copies)
	}
	return w.Flush()
}

// xfsProto writes the protofile of the tree at dir (an absolute path) to
// w. A protofile is a list of whitespace-separated tokens (a token that
// starts with ':' begins a comment, "$" ends a directory), so a name or a
// path with whitespace, a name starting with ':', the name "$", a sticky
// bit and a socket cannot be written: those are errors, not left out, so
// that the image holds the tree exactly. A file with more than one name
// is written once per name (the count is returned): mkfs.xfs 6.1 makes a
// new inode for each entry.
func xfsProto(w io.Writer, dir string) (copies int, err error) {
	if err := protoToken(dir, "path"); err != nil {
		return 0, err
	}
	seen := map[uint64]bool{}
	var walk func(path string, root bool) error
	walk = func(path string, root bool) error {
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		mode := st.Mode
		if mode&unix.S_ISVTX != 0 {
			return fmt.Errorf("%s: a protofile cannot set the sticky bit", path)
		}
		var typ byte
		switch mode & unix.S_IFMT {
		case unix.S_IFREG:
			typ = '-'
		case unix.S_IFDIR:
			typ = 'd'
		case unix.S_IFLNK:
			typ = 'l'
		case unix.S_IFCHR:
			typ = 'c'
		case unix.S_IFBLK:
			typ = 'b'
		case unix.S_IFIFO:
			typ = 'p'
		default:
			return fmt.Errorf("%s: a protofile cannot make a file of mode %#o", path, mode)
		}
		suid, sgid := byte('-'), byte('-')
		if mode&unix.S_ISUID != 0 {
			suid = 'u'
		}
		if mode&unix.S_ISGID != 0 {
			sgid = 'g'
		}
		fields := []string{fmt.Sprintf("%c%c%c%03o", typ, suid, sgid, mode&0o777), fmt.Sprint(st.Uid), fmt.Sprint(st.Gid)}
		if !root {
			name := filepath.Base(path)
			if err := protoToken(name, "name"); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if strings.HasPrefix(name, ":") || name == "$" {
				return fmt.Errorf("%s: a protofile cannot hold the name %q", path, name)
			}
			fields = append([]string{name}, fields...)
		}
		switch typ {
		case '-':
			if st.Nlink > 1 {
				if seen[st.Ino] {
					copies++
				}
				seen[st.Ino] = true
			}
			if err := protoToken(path, "path"); err != nil {
				return err
			}
			fields = append(fields, path)
		case 'l':
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if err := protoToken(target, "symlink target"); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			fields = append(fields, target)
		case 'c', 'b':
			fields = append(fields, fmt.Sprint(unix.Major(st.Rdev)), fmt.Sprint(unix.Minor(st.Rdev)))
		}
		if _, err := fmt.Fprintln(w, strings.Join(fields, " ")); err != nil {
			return err
		}
		if typ != 'd' {
			return nil
		}
		ents, err := os.ReadDir(path)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := walk(filepath.Join(path, e.Name()), false); err != nil {
				return err
			}
		}
		_, err = fmt.Fprintln(w, "$")
		return err
	}
	// The first line is ignored; the second holds two numbers, ignored too.
	if _, err := fmt.Fprint(w, "cairn-bench\n0 0\n"); err != nil {
		return 0, err
	}
	// The root's "$" ends the file.
	return copies, walk(dir, true)
}

// protoToken reports whether s can be one protofile token.
func protoToken(s, what string) error {
	if s == "" {
		return fmt.Errorf("a protofile cannot hold an empty %s", what)
	}
	if strings.ContainsAny(s, " \t\n\r\v\f") {
		return fmt.Errorf("a protofile cannot hold the %s %q: it has whitespace", what, s)
	}
	return nil
}
