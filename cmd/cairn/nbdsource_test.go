package main

import (
	"reflect"
	"strings"
	"testing"
)

// cairn's parameters leave the URI the server is given; the rest of the
// query is kept as written.
func TestParseNBDSource(t *testing.T) {
	cases := []struct {
		in   string
		want nbdSpec
		err  string
	}{
		{in: "nbd+unix:///vda?socket=/run/s.sock", want: nbdSpec{URI: "nbd+unix:///vda?socket=/run/s.sock", Export: "vda"}},
		{in: "nbd+unix:///vda?socket=/run/s.sock&bitmap=c1&checkpoint=c2",
			want: nbdSpec{URI: "nbd+unix:///vda?socket=/run/s.sock", Export: "vda", Bitmap: "c1", Checkpoint: "c2"}},
		{in: "nbd+unix:///vda?checkpoint=backup%2D1&socket=/run/s.sock",
			want: nbdSpec{URI: "nbd+unix:///vda?socket=/run/s.sock", Export: "vda", Checkpoint: "backup-1"}},
		{in: "NBD://10.0.0.5:10809/disk0?bitmap=b", want: nbdSpec{URI: "NBD://10.0.0.5:10809/disk0", Export: "disk0", Bitmap: "b"}},
		{in: "nbds://host/vdb?tls-hostname=h&bitmap=x", want: nbdSpec{URI: "nbds://host/vdb?tls-hostname=h", Export: "vdb", Bitmap: "x"}},
		{in: "nbd+unix:///vda?socket=/s&bitmap=a&bitmap=b", err: "given twice"},
		{in: "nbd+unix:///vda?socket=/s&bitmap=", err: "needs a name"},
		{in: "nbd+unix:///vda?socket=/s&checkpoint=a%0Ab", err: "control characters"},
		{in: "nbd+unix:///vda?socket=/s&bitmap=" + strings.Repeat("x", 1024), err: "at most 1023"},
		{in: "nbd+unix:///vda?bitmap=a", err: "socket= is required"},
		{in: "nbd+unix:///vda?socket=/s&bogus=1", err: "unknown parameter bogus"},
	}
	for _, c := range cases {
		got, err := parseNBDSource(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want one saying %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s:\n got %+v, %v\nwant %+v", c.in, got, err, c.want)
		}
	}
}

// An NBD source is named after its export, or by DISK=; its URI keeps
// every '=' it holds and is not taken for a path.
func TestSourceArgsNBD(t *testing.T) {
	e := &cmdEnv{}
	got, err := e.sourceArgs([]string{
		"nbd+unix:///vda?socket=/run/s.sock&bitmap=c1",
		"data=nbd://host/export-1?bitmap=c1",
		"/srv/web.img",
	})
	want := []backupDisk{
		{Name: "vda", Path: "nbd+unix:///vda?socket=/run/s.sock&bitmap=c1"},
		{Name: "data", Path: "nbd://host/export-1?bitmap=c1"},
		{Name: "web", Path: "/srv/web.img"},
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("sourceArgs:\n got %+v, %v\nwant %+v", got, err, want)
	}
	if _, err := e.sourceArgs([]string{"nbd://host/vda?bitmap=a&bitmap=b"}); err == nil {
		t.Error("a bad NBD source was accepted")
	}
	r := backupRequest{Name: "vm1", Disks: want}
	if err := r.check(); err != nil {
		t.Errorf("check of NBD sources: %v", err)
	}
}
