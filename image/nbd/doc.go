// Package nbd speaks the Network Block Device protocol, after the NBD
// project's protocol document (doc/proto.md) and URI format (doc/uri.md):
// a read-only server of disks, and a client to read disks from NBD
// servers (qemu-nbd, qemu-storage-daemon, QEMU itself) with their
// allocation and dirty bitmaps. It knows nothing of vaults: the server
// serves any Export, and the client is an io.ReaderAt with a size and
// NextData, the shape of image.Source.
//
// Terms (those of the protocol):
//   - handshake: the option haggling before transmission. Only fixed
//     newstyle is spoken, on both ends.
//   - export: a named disk of a server; "" is the default export.
//   - structured replies: replies in chunks (data, hole, error with an
//     offset, block status), negotiated by NBD_OPT_STRUCTURED_REPLY.
//   - metadata context: a kind of per-extent status a server reports
//     with NBD_CMD_BLOCK_STATUS: base:allocation (HOLE, ZERO) or QEMU's
//     qemu:dirty-bitmap:NAME (DIRTY).
//   - cookie: a request's identifier, echoed in its reply; replies may
//     come in any order.
//
// # Server
//
// Options: NBD_OPT_GO and NBD_OPT_INFO (NBD_INFO_EXPORT, BLOCK_SIZE —
// minimum 1, preferred the export's block size, maximum MaxPayload —
// NAME, DESCRIPTION), NBD_OPT_EXPORT_NAME, NBD_OPT_LIST, NBD_OPT_ABORT,
// NBD_OPT_STRUCTURED_REPLY, NBD_OPT_LIST_META_CONTEXT and
// NBD_OPT_SET_META_CONTEXT (base:allocation), NBD_OPT_STARTTLS
// (crypto/tls; TLS may be required). Other options get
// NBD_REP_ERR_UNSUP.
//
// Commands: READ (with structured replies: hole chunks for the export's
// holes, data chunks of at most 1 MiB, and an error chunk with the
// offset where a read failed — the bytes of a failed read are never
// sent; NBD_CMD_FLAG_DF honoured), BLOCK_STATUS, CACHE, FLUSH, DISC.
// The export is read-only (NBD_FLAG_READ_ONLY): WRITE, TRIM and
// WRITE_ZEROES get EPERM. A read longer than MaxPayload gets EOVERFLOW
// (EINVAL without structured replies), a range past the export's end
// EINVAL.
//
// Wiring: NewServer(Options{Lookup: ...}) then Serve(ctx, ln) on a
// listener from ListenUnix or ListenTCP (which refuses non-loopback
// addresses unless told otherwise); cancelling ctx closes the listener,
// lets requests in flight finish (within ShutdownGrace) and returns.
// An Export is an io.ReaderAt with a Size; one that also has NextData
// (DataFinder), BlockSize, Prefetch, Description or Close — as
// snapshot.DiskReader and image.Source do — gets holes, a preferred
// block size, NBD_CMD_CACHE, a description and a close at the end.
//
// Invariants: one goroutine per connection reads requests and Workers
// goroutines answer them, so a slow read does not hold up the others;
// each reply is written whole under a mutex, chunks of different
// replies may interleave. Memory per connection is bounded: option data
// at 64 KiB (longer options are skipped unread), read buffers at
// 2×MaxPayload in all (a reader waits for room), at most Workers
// requests queued. Bad input from a client ends its connection with an
// error wrapping ErrProtocol, never a panic.
//
// # Client
//
// Dial takes nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH
// and their nbds forms. It negotiates structured replies, the metadata
// contexts asked for (HasMetaContext tells which were granted: a
// missing dirty bitmap is reported, not silently read as clean), and
// NBD_OPT_GO. ReadAt is safe for concurrent use; requests share the
// connection, at most MaxInFlight on the wire. Reads longer than the
// server's maximum are split; unaligned ends honour the server's
// minimum block size. WalkExtents asks BLOCK_STATUS as often as
// needed: servers may answer in parts, and one request covers at most
// 4 GiB. Every reply is checked against its request (chunks inside it,
// not overlapping, covering it all); a server that breaks the protocol
// or goes away fails the requests in flight with ErrDisconnected.
package nbd
