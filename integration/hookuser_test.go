package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHookRunsAsTheDaemon runs a daemon as a second uid, with one
// supplementary group, secrets in its environment and a file its parent
// left open. Root sets policies through its API and starts runs: the
// hooks run as the daemon's uid, gid and groups (not the client's), in
// "/", with only the environment cairn documents and no file descriptor
// but stdin, stdout and stderr. A policy cannot name another user to
// run its hooks as, nor add to their environment.
func TestHookRunsAsTheDaemon(t *testing.T) {
	needTool(t, "id", "ls", "env")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test runs a daemon as another uid and needs root")
		}
		t.Skip("needs root to run a daemon as another uid")
	}
	const group = otherID + 1
	dir := t.TempDir()
	reachable(t, dir)
	home := filepath.Join(dir, "home") // the daemon's, its vault inside
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, otherID, otherID); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "cairn") // cairnBin's folder may be closed to others
	sh(t, "cp", cairnBin, bin)
	disk := filepath.Join(home, "vda.img")
	if err := os.WriteFile(disk, bytes.Repeat([]byte("hooked "), 100_000), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chown(disk, otherID, otherID)
	// The hook writes what it is and what it got.
	hook := filepath.Join(dir, "hook.sh")
	script := "#!/bin/sh\nexec >\"$1\"\nid -u\nid -g\nid -G\npwd\necho ENV\nenv\n"
	if err := os.WriteFile(hook, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	vault := filepath.Join(home, "vault")
	daemonEnv := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "LANG=C.UTF-8", "CAIRN_VAULT=" + vault,
		"SECRET_TOKEN=leak-me", "AWS_SECRET_ACCESS_KEY=leak-me-too", "CAIRN_NOTHING=leak-me-three"}
	run := func(cred *syscall.Credential, env []string, args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env, cmd.Dir = env, home
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		return string(out) + stderr.String(), err
	}
	daemonCred := &syscall.Credential{Uid: otherID, Gid: otherID, Groups: []uint32{group}}
	if out, err := run(daemonCred, daemonEnv, "init"); err != nil {
		t.Fatalf("init as uid %d: %v\n%s", otherID, err, out)
	}
	// A file the daemon's parent leaves open in it (as a careless
	// service manager or shell might): no hook may get it.
	leaked, err := os.Open(filepath.Join(dir, "hook.sh"))
	if err != nil {
		t.Fatal(err)
	}
	defer leaked.Close()
	d := exec.Command(bin, "daemon")
	d.Env, d.Dir = daemonEnv, home
	d.SysProcAttr = &syscall.SysProcAttr{Credential: daemonCred}
	d.ExtraFiles = []*os.File{leaked}
	log := &lockedBuffer{}
	d.Stdout, d.Stderr = log, log
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Wait() }()
	t.Cleanup(func() {
		d.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("daemon: %v\n%s", err, log)
			}
		case <-time.After(15 * time.Second):
			d.Process.Kill()
			t.Errorf("daemon did not stop:\n%s", log)
		}
	})
	if !waitFor(10*time.Second, func() bool { return strings.Contains(log.String(), "serving ") }) {
		t.Fatalf("daemon did not start:\n%s", log)
	}

	// Root, with secrets of its own, is the client.
	client := []string{"PATH=" + os.Getenv("PATH"), "CAIRN_SOCKET=" + filepath.Join(vault, "cairn.sock"), "CLIENT_SECRET=leak-me-four"}
	pre, post := filepath.Join(home, "pre.out"), filepath.Join(home, "post.out")
	if out, err := run(nil, client, "policy", "set", "web", "--source", "vda="+disk, "--every", "24h", "--keep-last", "3",
		"--pre-hook", hook+" "+pre, "--post-hook", hook+" "+post); err != nil {
		t.Fatalf("policy set: %v\n%s", err, out)
	}
	out, err := run(nil, client, "run", "web")
	if err != nil {
		t.Fatalf("run: %v\n%s\n%s", err, out, log)
	}
	point := strings.TrimSpace(out[:strings.Index(out, "\n")+1])

	for _, c := range []struct {
		file string
		env  []string // beyond what every hook gets
	}{{pre, nil}, {post, []string{"CAIRN_RESULT=success", "CAIRN_POINT=" + point}}} {
		b, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatalf("the hook wrote nothing: %v\n%s", err, log)
		}
		head, env, _ := strings.Cut(string(b), "ENV\n")
		lines := strings.Split(strings.TrimSpace(head), "\n")
		want := []string{fmt.Sprint(otherID), fmt.Sprint(otherID), fmt.Sprintf("%d %d", otherID, group), "/"}
		if !slices.Equal(lines, want) {
			t.Errorf("%s: uid, gid, groups and folder %q, want %q", filepath.Base(c.file), lines, want)
		}
		wantEnv := append([]string{"CAIRN_POLICY=web", "CAIRN_RESOURCE=web", "CAIRN_VAULT=" + vault, "CAIRN_DISKS=vda=" + disk,
			"CAIRN_HOOK=" + strings.TrimSuffix(filepath.Base(c.file), ".out"), "PATH=" + os.Getenv("PATH"), "HOME=" + home, "LANG=C.UTF-8"}, c.env...)
		var got []string
		for _, kv := range strings.Split(strings.TrimSpace(env), "\n") {
			if k, _, _ := strings.Cut(kv, "="); k != "PWD" && k != "OLDPWD" && k != "SHLVL" && k != "_" { // the shell's own
				got = append(got, kv)
			}
		}
		slices.Sort(got)
		slices.Sort(wantEnv)
		if !slices.Equal(got, wantEnv) {
			t.Errorf("%s: the hook's environment\n%s\nwant exactly\n%s", filepath.Base(c.file), strings.Join(got, "\n"), strings.Join(wantEnv, "\n"))
		}
		if strings.Contains(string(b), "leak-me") {
			t.Errorf("%s: a secret of the daemon or its client reached the hook:\n%s", filepath.Base(c.file), b)
		}
	}
	// The open files of a hook, listed by the hook itself (no shell,
	// which keeps some of its own): stdin from /dev/null, stdout and
	// stderr to the run's log, and the folder ls reads.
	if out, err := run(nil, client, "policy", "set", "fds", "--source", "vda="+disk, "--every", "24h", "--keep-last", "1",
		"--pre-hook", "ls -l /proc/self/fd/"); err != nil {
		t.Fatalf("policy set: %v\n%s", err, out)
	}
	out, err = run(nil, client, "run", "fds")
	if err != nil {
		t.Fatalf("run: %v\n%s\n%s", err, out, log)
	}
	fds := 0
	for _, l := range strings.Split(out, "\n") {
		before, target, ok := strings.Cut(l, " -> ")
		if !ok {
			continue
		}
		fds++
		f := strings.Fields(before)
		fd := f[len(f)-1]
		if !(fd == "0" && target == "/dev/null" || (fd == "1" || fd == "2") && strings.HasPrefix(target, "pipe:") ||
			strings.HasPrefix(target, "/proc/") && strings.HasSuffix(target, "/fd")) {
			t.Errorf("a hook holds descriptor %s -> %s", fd, target)
		}
	}
	if fds < 4 {
		t.Errorf("the hook listed %d descriptors:\n%s", fds, out)
	}

	// A policy has no field for whom its hooks run as.
	for _, field := range []string{`"user":"root"`, `"uid":0`, `"run_as":"root"`, `"env":{"LD_PRELOAD":"/tmp/x.so"}`} {
		body := `{"name":"web2","sources":[{"disk":"vda","path":"` + disk + `"}],"schedule":{"every":"1h"},` +
			`"retention":{"keep_last":1},"pre_hook":["` + hook + `","` + pre + `"],` + field + `}`
		status, b := curlAPI(t, 0, filepath.Join(vault, "cairn.sock"), "PUT", "/policies/web2", body)
		if status != 400 || !strings.Contains(b, "unknown field") {
			t.Errorf("a policy with %s: %d %s, want 400 and unknown field", field, status, b)
		}
	}
}
