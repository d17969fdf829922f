package main

import (
	"slices"
	"testing"
)

func TestInterleaveFlags(t *testing.T) {
	app := newApp(&cmdEnv{})
	cases := []struct{ in, want []string }{
		{[]string{"cairn", "restore", "p@1", "--disk", "vdb", "out"}, []string{"cairn", "restore", "--disk", "vdb", "p@1", "out"}},
		{[]string{"cairn", "--vault", "v", "points", "web", "--json"}, []string{"cairn", "--vault", "v", "points", "--json", "web"}},
		{[]string{"cairn", "backup", "a.img", "--name=x", "b.img"}, []string{"cairn", "backup", "--name=x", "a.img", "b.img"}},
		{[]string{"cairn", "show", "--", "-odd"}, []string{"cairn", "show", "--", "-odd"}},
		{[]string{"cairn", "frob", "x", "--y"}, []string{"cairn", "frob", "x", "--y"}},
		{[]string{"cairn", "vault", "set", "--capacity", "none"}, []string{"cairn", "vault", "set", "--capacity", "none"}},
	}
	for _, c := range cases {
		if got := interleaveFlags(app, c.in); !slices.Equal(got, c.want) {
			t.Errorf("interleaveFlags(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
