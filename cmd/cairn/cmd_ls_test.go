package main

import (
	"encoding/json"
	"syscall"
	"testing"

	"github.com/cairn-backup/cairn/fs/guest"
)

// A name that is not valid UTF-8 keeps its exact bytes in ls --json, so
// that a script can hand it back to cairn cat.
func TestEntryViewNameBytes(t *testing.T) {
	for _, name := range []string{"plain.txt", "straße", "bad\xffname", "tail\xc3"} {
		e := newEntryView(nil, name, guest.Attr{Mode: syscall.S_IFREG | 0o644})
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var back struct {
			Name      string `json:"name"`
			NameBytes []byte `json:"name_bytes"`
		}
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		got := back.Name
		if back.NameBytes != nil {
			got = string(back.NameBytes)
		}
		if got != name {
			t.Errorf("%q comes back from %s as %q", name, b, got)
		}
		if valid := back.NameBytes == nil; valid != (back.Name == name) {
			t.Errorf("%q: name_bytes %q beside name %q", name, back.NameBytes, back.Name)
		}
	}
}

// Guest names that would break a listing's lines or reach the terminal
// as control sequences are quoted; every other name, UTF-8 included, is
// shown as it is.
func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"plain.txt":         "plain.txt",
		"with space":        "with space",
		"straße ★":          "straße ★",
		"evil\nname":        `"evil\nname"`,
		"tab\there":         `"tab\there"`,
		"esc\x1b[31mred":    `"esc\x1b[31mred"`,
		"bell\a":            `"bell\a"`,
		"del\x7f":           `"del\x7f"`,
		"c1\u009bcsi":       `"c1\u009bcsi"`,
		"rtl\u202eoverride": `"rtl\u202eoverride"`,
		"bad\xffutf8":       `"bad\xffutf8"`,
		`"quoted"`:          `"\"quoted\""`,
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %s, want %s", in, got, want)
		}
	}
}
