package volume

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWalkCasefold: paths that cairn ls and cat resolve find every name
// the directory lists, whatever its bytes, in a casefold directory
// (where names that are not valid UTF-8 match only exactly) as in any
// other; and a case variant of a valid name is found as the kernel
// finds it.
func TestWalkCasefold(t *testing.T) {
	needTool(t, "mkfs.ext4", "debugfs")
	dir := t.TempDir()
	img := filepath.Join(dir, "fs.img")
	run(t, "mkfs.ext4", "-q", "-F", "-b", "4096", "-O", "casefold", img, "16M")
	data := filepath.Join(dir, "data")
	os.WriteFile(data, []byte("content\n"), 0o644)
	names := []string{"Hello.txt", "bad\xffname", "tail\xc3", "straße"}
	cmds := []string{"mkdir /cf", "sif /cf flags 0x40080000", "mkdir /plain"}
	for _, n := range names {
		cmds = append(cmds, "write "+data+" /cf/"+n, "write "+data+" /plain/"+n)
	}
	script := filepath.Join(dir, "cmds")
	os.WriteFile(script, []byte(strings.Join(cmds, "\n")+"\n"), 0o644)
	run(t, "debugfs", "-w", "-f", script, img)

	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	d, err := Open(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	for _, parent := range []string{"cf", "plain"} {
		_, fsys, ino, err := d.Resolve(parent, true)
		if err != nil {
			t.Fatal(err)
		}
		ents, err := fsys.ReadDir(ino)
		if err != nil || len(ents) != len(names) {
			t.Fatalf("%s lists %v, %v", parent, ents, err)
		}
		for _, e := range ents {
			_, _, got, err := d.Resolve("/"+parent+"/"+e.Name, true)
			if err != nil || got != e.Ino {
				t.Errorf("Resolve %s/%q = %d, %v; listed as %d", parent, e.Name, got, err, e.Ino)
			}
		}
	}
	_, _, want, _ := d.Resolve("cf/Hello.txt", true)
	if _, _, got, err := d.Resolve("cf/HELLO.TXT", true); err != nil || got != want {
		t.Errorf("Resolve cf/HELLO.TXT = %d, %v; want %d", got, err, want)
	}
	if _, _, _, err := d.Resolve("plain/HELLO.TXT", true); err == nil {
		t.Error("Resolve plain/HELLO.TXT found a file in a case-sensitive directory")
	}
}
