package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/cairn-backup/cairn/image/nbd/nbdtest"
)

// runQMP sends QMP commands to the socket of a QEMU or
// qemu-storage-daemon, in order, each written as the README writes them:
// {"execute": NAME, "arguments": {...}}. It prints each command's return
// value on a line. A command QEMU refuses fails the run, unless -retry
// gives it time (blockdev-del of a node whose job is still ending).
func runQMP(args []string) error {
	fl := flag.NewFlagSet("qmp", flag.ContinueOnError)
	sock := fl.String("socket", "", "QMP socket")
	retry := fl.Duration("retry", 0, "retry a refused command this long")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *sock == "" || fl.NArg() == 0 {
		return errors.New("usage: qmp -socket SOCKET [-retry D] COMMAND (JSON), one or more")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	q, err := nbdtest.DialQMP(ctx, *sock)
	if err != nil {
		return err
	}
	defer q.Close()
	for _, a := range fl.Args() {
		var c struct {
			Execute   string          `json:"execute"`
			Arguments json.RawMessage `json:"arguments"`
		}
		if err := json.Unmarshal([]byte(a), &c); err != nil || c.Execute == "" {
			return fmt.Errorf("not a QMP command: %s", a)
		}
		var args any
		if len(c.Arguments) > 0 {
			args = c.Arguments
		}
		deadline := time.Now().Add(*retry)
		for {
			var out json.RawMessage
			err := q.Execute(ctx, c.Execute, args, &out)
			var qe *nbdtest.QMPError
			if errors.As(err, &qe) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			if err != nil {
				return err
			}
			fmt.Println(string(out))
			break
		}
	}
	return nil
}
