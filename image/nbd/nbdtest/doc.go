// Package nbdtest helps tests drive QEMU's NBD tools: it checks that a
// tool is installed (failing, not skipping, under CI=true), speaks QMP
// (the QEMU Machine Protocol, JSON over a unix socket) and runs
// qemu-storage-daemon with a QMP socket for the length of a test. Only
// tests import it.
package nbdtest
