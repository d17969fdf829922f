// Package stream writes a raw disk as one compressed stream that the
// standard tools restore exactly: `zstd -d`, `lz4 -d` or `gzip -d`.
//
// Terms:
//   - chunk: a fixed run of input bytes (ChunkSize, 4 MiB by default)
//     compressed on its own into one complete frame (zstd, lz4) or member
//     (gzip).
//   - stream: the frames of every chunk concatenated in input order. Each
//     format defines a concatenation of frames as the concatenation of
//     their contents, and every standard decompressor reads it so.
//
// Invariants:
//   - Chunks compress in parallel on Workers goroutines; output is written
//     in input order by one goroutine, so w needs no locking and may be a
//     pipe.
//   - Memory is bounded by the window of chunks in flight (about
//     3 × Workers + 1 chunks, each with its compressed copy), whatever the
//     input size.
//   - Zeros(n) stands for n zero bytes without materialising them: each
//     whole chunk of zeros reuses one frame compressed once, so a sparse
//     terabyte disk streams at the speed of the disk's data.
//   - WriteFrame(frame) puts a frame made elsewhere (a zstd vault's
//     block) between the chunks as it is, after closing any partial
//     chunk; the caller vouches for what it decodes to.
//
// Independent chunks cost a little ratio against one long frame (each
// chunk starts with an empty history); at 4 MiB the loss is well under
// one percent for zstd's default window and nil for gzip and lz4, whose
// windows are 32 and 64 KiB.
package stream
