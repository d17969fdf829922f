package main
import (
 _ "github.com/dgraph-io/badger/v4"
 _ "github.com/hanwen/go-fuse/v2/fs"
 _ "github.com/klauspost/compress/zstd"
 _ "github.com/pierrec/lz4/v4"
 _ "github.com/urfave/cli/v2"
 _ "github.com/zeebo/blake3"
 _ "golang.org/x/sys/unix"
 _ "golang.org/x/term"
)
func main(){}
