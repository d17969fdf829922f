package storage

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"cairn.json", true},
		{"0123456789abcdef0123456789abcdef.pack", true},
		{"web01@20261121T100000Z", true},
		{"a", true},
		{"a.", true},
		{"a..b", true},
		{"x.tmpl", true},
		{"_-@.", true},
		{strings.Repeat("z", MaxNameLen), true},
		{"", false},
		{".", false},
		{"..", false},
		{".a", false},
		{"a.tmp", false},
		{"a/b", false},
		{"a b", false},
		{"é", false},
		{"a\x00", false},
		{strings.Repeat("z", MaxNameLen+1), false},
	} {
		t.Run(fmt.Sprintf("%q", c.name), func(t *testing.T) {
			err := CheckName(Points, c.name)
			if c.ok != (err == nil) {
				t.Errorf("CheckName = %v, want ok %v", err, c.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidName) {
				t.Errorf("%v does not wrap ErrInvalidName", err)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("message %q is not one line", err)
			}
		})
	}
	for _, k := range Kinds() {
		if err := CheckKind(k); err != nil {
			t.Errorf("CheckKind(%s): %v", k, err)
		}
	}
	if err := CheckName("index", "x"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("unknown kind: %v", err)
	}
}
