package image

import (
	"bytes"
	"errors"
	"testing"
)

func TestDetectFormat(t *testing.T) {
	vdi := make([]byte, 512)
	copy(vdi, "<<< Oracle VM VirtualBox Disk Image >>>\n")
	copy(vdi[0x40:], []byte{0x7f, 0x10, 0xda, 0xbe})
	tests := []struct {
		name    string
		data    []byte
		want    string
		foreign bool
	}{
		{"qcow2", []byte("QFI\xfb\x00\x00\x00\x03"), FormatQcow2, false},
		{"empty", nil, FormatRaw, false},
		{"short", []byte("QF"), FormatRaw, false},
		{"zeros", make([]byte, 4096), FormatRaw, false},
		{"mbr", append(make([]byte, 510), 0x55, 0xaa), FormatRaw, false},
		{"vmdk", []byte("KDMV\x01\x00\x00\x00"), "", true},
		{"vmdk descriptor", []byte("# Disk DescriptorFile\nversion=1\n"), "", true},
		{"vhdx", []byte("vhdxfile\x00\x00"), "", true},
		{"vdi", vdi, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DetectFormat(bytes.NewReader(tt.data))
			if tt.foreign {
				if !errors.Is(err, ErrUnsupportedFormat) {
					t.Fatalf("err = %v, want ErrUnsupportedFormat", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
