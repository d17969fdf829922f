package storage_test

import (
	"testing"

	"github.com/cairn-backup/cairn/chunkstore/storage"
	"github.com/cairn-backup/cairn/chunkstore/storage/storagetest"
)

func TestMemConforms(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Storage { return storage.NewMem() })
}
