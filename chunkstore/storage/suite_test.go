package storage_test

import (
	"testing"

	"github.com/cairn-backup/cairn/chunkstore/storage"
	"github.com/cairn-backup/cairn/chunkstore/storage/storagetest"
)

func newDir(t *testing.T) *storage.Dir {
	t.Helper()
	d, err := storage.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDirConforms(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Storage { return newDir(t) })
}

func TestMemConforms(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Storage { return storage.NewMem() })
}

func TestFaultyConforms(t *testing.T) {
	t.Run("Mem", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.Storage { return storage.NewFaulty(storage.NewMem()) })
	})
	t.Run("Dir", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.Storage { return storage.NewFaulty(newDir(t)) })
	})
}
