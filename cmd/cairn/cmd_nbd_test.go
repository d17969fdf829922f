package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/image/nbd"
	"github.com/cairn-backup/cairn/snapshot"
)

func TestNBDRequestCheck(t *testing.T) {
	long := "/" + strings.Repeat("s", maxSocketPath)
	cases := []struct {
		r  nbdRequest
		ok bool
	}{
		{nbdRequest{Point: "p@latest"}, true},
		{nbdRequest{Point: "p@latest", Socket: "/run/p.sock"}, true},
		{nbdRequest{Point: "p@latest", Listen: "127.0.0.1:0"}, true},
		{nbdRequest{Point: "p@latest", Listen: "localhost:10809"}, true},
		{nbdRequest{Point: "p@latest", Listen: "[::1]:10809"}, true},
		{nbdRequest{Point: "p@latest", Listen: "0.0.0.0:10809", AllowRemote: true}, true},
		{nbdRequest{Point: "p@latest", Listen: ":10809", AllowRemote: true, TLSCert: "/c", TLSKey: "/k"}, true},
		{nbdRequest{Point: "p@latest", ExportName: "boot disk"}, true},
		{nbdRequest{}, false},
		{nbdRequest{Point: "p@latest", Socket: "/s", Listen: "127.0.0.1:0"}, false},
		{nbdRequest{Point: "p@latest", Socket: "rel.sock"}, false},
		{nbdRequest{Point: "p@latest", Socket: long}, false},
		{nbdRequest{Point: "p@latest", Listen: "0.0.0.0:10809"}, false},
		{nbdRequest{Point: "p@latest", Listen: "192.0.2.1:10809"}, false},
		{nbdRequest{Point: "p@latest", Listen: "127.0.0.1"}, false},
		{nbdRequest{Point: "p@latest", Listen: "127.0.0.1:65536"}, false},
		{nbdRequest{Point: "p@latest", Listen: "127.0.0.1:http"}, false},
		{nbdRequest{Point: "p@latest", AllowRemote: true}, false},
		{nbdRequest{Point: "p@latest", TLSCert: "/c"}, false},
		{nbdRequest{Point: "p@latest", TLSKey: "/k"}, false},
		{nbdRequest{Point: "p@latest", TLSCert: "c", TLSKey: "k"}, false},
		{nbdRequest{Point: "p@latest", ExportName: "a\x00b"}, false},
		{nbdRequest{Point: "p@latest", ExportName: "\xff"}, false},
		{nbdRequest{Point: "p@latest", ExportName: strings.Repeat("x", 4097)}, false},
	}
	for _, c := range cases {
		err := c.r.check()
		var ue usageError
		switch {
		case c.ok && err != nil:
			t.Errorf("%+v: %v", c.r, err)
		case !c.ok && !errors.As(err, &ue):
			t.Errorf("%+v: %v, want a usage error", c.r, err)
		}
	}
}

// TestRunNBD serves a point with runNBD and reads it with the nbd
// client: the bytes, the holes, the point in use while served, and the
// result once cancelled.
func TestRunNBD(t *testing.T) {
	v := snapshot.TestVault(t, snapshot.Config{BlockSize: 64 << 10})
	ctx := context.Background()
	data := make([]byte, 1<<20)
	copy(data[128<<10:], bytes.Repeat([]byte("cairn"), 20000))
	p, err := v.Backup(ctx, "vm", []snapshot.DiskSource{{Name: "vda", Src: &snapshot.MemSource{Data: data}}}, snapshot.BackupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "s.sock")
	sctx, stop := context.WithCancel(ctx)
	ready := make(chan nbdView, 1)
	type ended struct {
		res *nbdResult
		err error
	}
	done := make(chan ended, 1)
	go func() {
		res, err := runNBD(sctx, v, nbdRequest{Point: "vm@latest", Socket: sock, ExportName: "boot"}, nil, t.Logf,
			func(v nbdView) { ready <- v })
		done <- ended{res, err}
	}()
	var view nbdView
	select {
	case view = <-ready:
	case e := <-done:
		t.Fatalf("runNBD: %v", e.err)
	case <-time.After(10 * time.Second):
		t.Fatal("runNBD did not listen")
	}
	if view.URI != "nbd+unix:///boot?socket="+sock || view.Point != p.Name() || view.Disk != "vda" || view.Size != 1<<20 {
		t.Errorf("view %+v", view)
	}
	c, err := nbd.Dial(ctx, view.URI, nbd.ClientOptions{MetaContexts: []string{nbd.ContextAllocation}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Flags()&nbd.FlagReadOnly == 0 {
		t.Error("the export is not read-only")
	}
	got := make([]byte, len(data))
	if _, err := c.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Errorf("read through the export: %v, equal %v", err, bytes.Equal(got, data))
	}
	exts, err := c.Extents(ctx, nbd.ContextAllocation, 0, int64(len(data)))
	if err != nil || len(exts) != 3 || exts[0].Flags&nbd.StateHole == 0 || exts[1].Flags != 0 ||
		exts[1].Off != 128<<10 || exts[1].End() != 256<<10 || exts[2].Flags&nbd.StateHole == 0 {
		t.Errorf("extents %+v, %v; want a hole, the data at 128K-256K, a hole", exts, err)
	}
	if err := v.Delete([]*snapshot.Point{p}); !errors.Is(err, snapshot.ErrInUse) {
		t.Errorf("delete of the served point: %v, want ErrInUse", err)
	}
	c.Close()
	stop()
	e := <-done
	// Holes are answered without reading: the data alone was read.
	if !errors.Is(e.err, context.Canceled) || e.res == nil || e.res.Reads == 0 || e.res.BytesRead != 128<<10 || e.res.ReadErrors != 0 {
		t.Errorf("end: %+v, %v", e.res, e.err)
	}
	// No longer in use: the point goes (a second point keeps the
	// resource, so the vault verifies at cleanup).
	if _, err := v.Backup(ctx, "vm", []snapshot.DiskSource{{Name: "vda", Src: &snapshot.MemSource{Data: data}}}, snapshot.BackupOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := v.Delete([]*snapshot.Point{p}); err != nil {
		t.Errorf("delete after the export stopped: %v", err)
	}
}
