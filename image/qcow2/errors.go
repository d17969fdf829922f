package qcow2

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error from this package that is about the image
// itself wraps one of them.
var (
	// ErrCorrupt: the image breaks the qcow2 specification or points
	// outside its file (also a truncated file).
	ErrCorrupt = errors.New("corrupt qcow2 image")
	// ErrUnsupported: a valid image using a feature cairn does not read.
	ErrUnsupported = errors.New("unsupported qcow2 feature")
	// ErrEncrypted: the image is encrypted.
	ErrEncrypted = errors.New("encrypted qcow2 images are not supported")
)

// errf builds an error naming the image, wrapping sentinel.
func errf(name string, sentinel error, format string, args ...any) error {
	who := "qcow2"
	if name != "" {
		who = "qcow2 image " + name
	}
	return fmt.Errorf("%s: %s: %w", who, fmt.Sprintf(format, args...), sentinel)
}
