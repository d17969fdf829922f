package nbd_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/cairn-backup/cairn/image/nbd"
)

// disk is any io.ReaderAt with a size; a vault point's disk reader
// (which also has NextData, BlockSize and Prefetch) serves as it is.
type disk struct{ b []byte }

func (d disk) ReadAt(p []byte, off int64) (int, error) { return copy(p, d.b[off:]), nil }
func (d disk) Size() int64                             { return int64(len(d.b)) }

// A server of one named export on a unix socket, until interrupted.
func ExampleServer() {
	sock := filepath.Join(os.TempDir(), "cairn-example-nbd.sock")
	ln, err := nbd.ListenUnix(sock, 0o600)
	if err != nil {
		fmt.Println(err)
		return
	}
	srv, err := nbd.NewServer(nbd.Options{
		Lookup: func(_ context.Context, name string) (nbd.Export, error) {
			if name != "vda" {
				return nil, nbd.ErrUnknownExport
			}
			return disk{make([]byte, 1<<20)}, nil
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("qemu-img info", nbd.UnixURI(sock, "vda"))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	srv.Serve(ctx, ln)
}

// Reading the blocks a dirty bitmap marks, from an export of
// qemu-storage-daemon or QEMU.
func ExampleClient_WalkExtents() {
	ctx := context.Background()
	bitmap := nbd.ContextDirtyBitmapPrefix + "backup-1"
	c, err := nbd.Dial(ctx, "nbd+unix:///vda?socket=/run/vm.sock", nbd.ClientOptions{
		MetaContexts: []string{nbd.ContextAllocation, bitmap},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	if !c.HasMetaContext(bitmap) {
		fmt.Println("the server has no bitmap backup-1: a full backup is needed")
		return
	}
	buf := make([]byte, 1<<20)
	c.WalkExtents(ctx, bitmap, 0, c.Size(), func(e nbd.Extent) error {
		if e.Flags&nbd.StateDirty == 0 {
			return nil
		}
		for off := e.Off; off < e.End(); off += int64(len(buf)) {
			n := min(int64(len(buf)), e.End()-off)
			if _, err := c.ReadAtContext(ctx, buf[:n], off); err != nil {
				return err
			}
			// ... store buf[:n] at off
		}
		return nil
	})
}
