package storage_test

import (
	"errors"
	"io"
	"testing"

	"github.com/cairn-backup/cairn/chunkstore/storage"
)

func TestMemDamage(t *testing.T) {
	m := storage.NewMem()
	ctx := t.Context()
	if err := m.Put(ctx, storage.Packs, "p.pack", []byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	before, _ := m.Get(ctx, storage.Packs, "p.pack")
	if err := m.Damage(storage.Packs, "p.pack", 3, []byte("xy")); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Get(ctx, storage.Packs, "p.pack"); string(got) != "012xy56789" {
		t.Errorf("after Damage: %q", got)
	}
	if string(before) != "0123456789" {
		t.Errorf("Damage changed a slice Get returned before: %q", before)
	}
	if err := m.Damage(storage.Packs, "p.pack", 9, []byte("xy")); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Damage past the end: %v", err)
	}
	if err := m.Damage(storage.Packs, "q.pack", 0, []byte("x")); !errors.Is(err, storage.ErrNotExist) {
		t.Errorf("Damage of a missing object: %v", err)
	}
}

func TestMemTruncate(t *testing.T) {
	m := storage.NewMem()
	ctx := t.Context()
	if err := m.Put(ctx, storage.Packs, "p.pack", []byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	if err := m.Truncate(storage.Packs, "p.pack", 4); err != nil {
		t.Fatal(err)
	}
	// A blob that was whole is now cut short: detected, not read as zeros.
	if err := m.ReadAt(ctx, storage.Packs, "p.pack", make([]byte, 3), 2); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("ReadAt across the cut: %v, want io.ErrUnexpectedEOF", err)
	}
	if info, err := m.Stat(ctx, storage.Packs, "p.pack"); err != nil || info.Size != 4 {
		t.Errorf("Stat after Truncate = %+v, %v", info, err)
	}
	if err := m.Truncate(storage.Packs, "p.pack", 5); err == nil {
		t.Error("Truncate to a larger size: no error")
	}
}
