// Package integration holds cairn's end-to-end tests. They build (or take
// from CAIRN_BIN) the real cairn binary, make real disk images with
// mkfs.ext4 -d from real files, and check results with outside tools:
// cmp, e2fsck, debugfs, qemu-img and, for mounts, the kernel's FUSE.
//
// A missing tool skips a test on a developer's machine, but fails it
// when CI=true: CI installs everything (see .ci/run).
package integration
