package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/image"
	"github.com/cairn-backup/cairn/snapshot"
)

// runProfile runs one backup of IMAGE into an existing vault under the
// CPU profiler, the way cairn backup would, and writes the profile.
func runProfile(args []string) error {
	fl := flag.NewFlagSet("profile", flag.ContinueOnError)
	dir := fl.String("vault", "", "vault directory (made with cairn init)")
	name := fl.String("name", "disk", "resource name")
	cpu := fl.String("cpu", "cpu.pprof", "CPU profile output")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *dir == "" || fl.NArg() != 1 {
		return errors.New("usage: profile -vault DIR [-name N] [-cpu FILE] IMAGE")
	}
	path := fl.Arg(0)
	src, err := image.OpenRaw(path)
	if err != nil {
		return err
	}
	defer src.Close()
	v, err := snapshot.Open(*dir, snapshot.Options{})
	if err != nil {
		return err
	}
	defer v.Close()
	out, err := os.Create(*cpu)
	if err != nil {
		return err
	}
	defer out.Close()
	if err := pprof.StartCPUProfile(out); err != nil {
		return err
	}
	start := time.Now()
	disk := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	p, err := v.Backup(context.Background(), *name, []snapshot.DiskSource{{Name: disk, Path: path, Src: src}}, snapshot.BackupOptions{})
	pprof.StopCPUProfile()
	if err != nil {
		return err
	}
	fmt.Printf("%s: %.2f s, allocated %d, changed %d, added %d\n", p.Name(), time.Since(start).Seconds(), p.Allocated(), p.Changed(), p.Added)
	return nil
}
