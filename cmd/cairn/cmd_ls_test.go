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
