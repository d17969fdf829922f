package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmds := map[string]func([]string) error{
		"offsets":  runOffsets,
		"diff":     runDiff,
		"report":   runReport,
		"chunks":   runChunks,
		"randread": runRandRead,
		"profile":  runProfile,
		"codecs":   runCodecs,
		"preads":   runPreads,
		"nbdwait":  runNBDWait,
		"nbdreads": runNBDReads,
		"qmp":      runQMP,
		"xfsproto": runXFSProto,
	}
	fn, ok := cmds[os.Args[1]]
	if !ok {
		usage()
	}
	if err := fn(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "benchtool %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: benchtool offsets|diff|report|chunks|randread|profile|codecs|preads|nbdwait|nbdreads|qmp|xfsproto ARGS (see doc.go)")
	os.Exit(2)
}
