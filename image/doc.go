// Package image holds disk image formats seen as byte sources and sinks.
//
// Terms:
//   - Source: a disk's guest bytes as an io.ReaderAt with a virtual size and
//     a way to find the ranges that may hold data (everything else reads as
//     zeros). Raw files, block devices and qcow2 images are Sources.
//   - Format: the container of a disk image file: "raw" (the guest bytes as
//     they are) or "qcow2". DetectFormat tells them apart by their magic and
//     refuses other recognised containers rather than treat them as raw.
//
// Sub-packages hold one format each (image/qcow2). Package image imports
// nothing else of cairn.
package image
