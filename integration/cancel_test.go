package integration

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCancelJob: cairn cancel stops a running backup within 2 seconds;
// the cairn backup that follows it exits 130 saying so, nothing is
// committed, the vault verifies, and the next backup succeeds.
func TestCancelJob(t *testing.T) {
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	big := bigImage(t, 4, 384<<20)
	mustCairn(t, vault, "init", "--chunk-size", "64K")
	d := startDaemon(t, vault)
	before := mustCairn(t, vault, "points", "--json")

	backup := exec.Command(cairnBin, "backup", "--name", "big", big)
	backup.Env = append(os.Environ(), "CAIRN_VAULT="+vault)
	var stdout, stderr bytes.Buffer
	backup.Stdout, backup.Stderr = &stdout, &stderr
	if err := backup.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- backup.Wait() }()
	var id string
	if !waitFor(10*time.Second, func() bool {
		var jobs []apiJob
		mustJSON(t, mustCairn(t, vault, "jobs", "--json"), &jobs)
		for _, j := range jobs {
			if j.Kind == "backup" && j.State == "running" && j.Progress.Done > 0 {
				id = j.ID
			}
		}
		return id != ""
	}) {
		t.Fatalf("no backup job running:\n%s", d.log)
	}
	start := time.Now()
	r := cairn(t, vault, "cancel", id)
	took := time.Since(start)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "canceled job "+id+" (backup big) after ") || took > 2*time.Second {
		t.Errorf("cairn cancel: exit %d %q %q after %v; want it canceled within 2s", r.code, r.stdout, r.stderr, took)
	}
	var err error
	select {
	case err = <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the backup's client did not exit after its job was canceled")
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 || stderr.String() != "cairn: canceled by cairn cancel\n" || stdout.Len() != 0 {
		t.Errorf("backup client: %v %q %q; want exit 130 and one line", err, stdout.String(), stderr.String())
	}
	var job apiJob
	mustJSON(t, mustCairn(t, vault, "job", "show", id, "--json"), &job)
	if job.State != "canceled" || job.ExitCode != 130 || job.Error != "canceled by cairn cancel" {
		t.Errorf("canceled job: %+v", job)
	}
	show := mustCairn(t, vault, "job", "show", id)
	for _, want := range []string{"state:     canceled", "error:     canceled by cairn cancel (exit code 130)", "log:\n  disk big-4: " + big + " (raw)"} {
		if !strings.Contains(show, want) {
			t.Errorf("job show lacks %q:\n%s", want, show)
		}
	}
	if got := mustCairn(t, vault, "points", "--json"); got != before {
		t.Errorf("a canceled backup changed the vault's points:\n%s", got)
	}
	mustCairn(t, vault, "verify")
	if r := cairn(t, vault, "cancel", id); r.code != 1 || !strings.Contains(r.stderr, "not running") {
		t.Errorf("cancel of a canceled job: exit %d %q", r.code, r.stderr)
	}
	if r := cairn(t, vault, "cancel", "nope"); r.code != 1 || r.stderr != "cairn: no such job: nope\n" {
		t.Errorf("cancel of no job: exit %d %q", r.code, r.stderr)
	}
	p := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "big", big))
	list := mustCairn(t, vault, "jobs")
	if !strings.Contains(list, "canceled") || !strings.Contains(list, "succeeded") || !strings.HasPrefix(list, "ID ") {
		t.Errorf("cairn jobs:\n%s", list)
	}
	d.stop(t)
	out := filepath.Join(dir, "r.img")
	mustCairn(t, vault, "restore", p, out)
	sameFile(t, big, out)
}
