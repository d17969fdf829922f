package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rawAPI sends one request to the daemon's socket exactly as written
// (target is the request-target: path and query, already escaped, so
// that "%2e%2e" or "%00" reach the daemon as they are) and returns the
// status and the body.
func rawAPI(t *testing.T, sock, method, target string, header map[string]string, body string) (int, string) {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: cairn\r\nConnection: close\r\nContent-Length: %d\r\n", method, target, len(body))
	for k, v := range header {
		fmt.Fprintf(&req, "%s: %s\r\n", k, v)
	}
	req.WriteString("\r\n" + body)
	// The daemon may answer before it has read all of a body it refuses.
	go c.Write(req.Bytes())
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s %.80s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %.80s: body: %v", method, target, err)
	}
	return resp.StatusCode, string(b)
}

// TestHostileRequests probes what cairn serves with names and paths
// meant to reach outside the vault and the guest: ".." and "/" in
// point, resource, policy, job and disk names, escaped or not, NUL
// bytes, names of 100 KB, guest symlinks that point at the host's
// files, restore and export targets inside the vault, and the metrics
// listener asked for the API. Nothing of the host may come back, no
// request may write into the vault's own files, every refusal is one
// line, and the daemon serves on unharmed. The guest paths are tried
// without a daemon, through one with cairn, and with raw requests.
func TestHostileRequests(t *testing.T) {
	needTool(t, "mkfs.ext4", "cmp")
	dir := t.TempDir()
	hostSecret := filepath.Join(dir, "host-secret")
	if err := os.WriteFile(hostSecret, []byte("HOST SECRET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hostPasswd, _ := os.ReadFile("/etc/passwd")
	const guestPasswd = "guest passwd\n"

	// The guest: its own /etc/passwd, and symlinks that would reach the
	// host's files if they were followed outside it.
	tree := filepath.Join(dir, "tree")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(tree, "etc"), 0o755))
	must(os.WriteFile(filepath.Join(tree, "etc", "passwd"), []byte(guestPasswd), 0o644))
	for name, target := range map[string]string{
		"up":          "../../../../../../../../etc/passwd",
		"abs":         "/etc/passwd",
		"hostetc":     "../../../../../../etc",
		"root":        "../../../../..",
		"shadowlink":  "/etc/shadow", // the guest has none; the host has
		"host-secret": hostSecret,    // a host file the guest lacks
		"loop1":       "loop2",
		"loop2":       "loop1",
	} {
		must(os.Symlink(target, filepath.Join(tree, "etc", name)))
	}
	// Names a listing must not print as they are.
	for _, name := range []string{"evil\nname", "esc\x1b]0;owned\x07", "tab\tname"} {
		must(os.WriteFile(filepath.Join(tree, "etc", name), nil, 0o644))
	}
	img := filepath.Join(dir, "vda.img")
	sh(t, "mkfs.ext4", "-q", "-F", "-d", tree, img, "8M")
	vault := filepath.Join(dir, "vault")
	mustCairn(t, vault, "init", "--chunk-size", "64K")
	point := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "web", "vda="+img))
	config := filepath.Join(vault, "cairn.json")
	configBefore, err := os.ReadFile(config)
	must(err)

	leaks := func(s string) bool {
		return strings.Contains(s, "HOST SECRET") || len(hostPasswd) > 0 && strings.Contains(s, string(hostPasswd))
	}
	catCases := []struct{ path, want string }{
		{"vda/etc/passwd", guestPasswd},
		{"vda/etc/up", guestPasswd},
		{"vda/etc/abs", guestPasswd},
		{"/vda/etc/abs", guestPasswd},
		{"vda/etc/hostetc/passwd", guestPasswd},
		{"vda/../../../../etc/passwd", guestPasswd},
		{"vda/etc/../../../../../etc/passwd", guestPasswd},
		{"vda/etc/root/etc/passwd", guestPasswd},
		{"vda/etc/root/etc/root/etc/up", guestPasswd},
		// Paths are cleaned before they are walked, as the mount's
		// kernel does: "passwd/.." is etc, whatever passwd is.
		{"vda/etc/up/../../../../etc/passwd", guestPasswd},
		{"vda/etc/passwd/..", "!is a directory"},
		{"vda/etc/up/x", "!not a directory"},
		{"vda/etc/shadowlink", "!no such file or directory"},
		{"vda/etc/host-secret", "!no such file or directory"},
		{"vda/" + strings.TrimPrefix(hostSecret, "/"), "!no such file or directory"},
		{"vda/etc/loop1", "!too many levels of symbolic links"},
		{"vda.raw/../../etc/passwd", "!has no disk"},
		{"vdb/etc/passwd", "!has no disk"},
	}
	// checkCat runs cairn cat on every case: without a daemon first,
	// then through one.
	checkCat := func(how string) {
		t.Helper()
		for _, c := range catCases {
			r := cairn(t, vault, "cat", "web@latest:"+c.path)
			if leaks(r.stdout + r.stderr) {
				t.Errorf("%s: cat %s gave the host's file: %q %q", how, c.path, r.stdout, r.stderr)
			}
			if want, isErr := strings.CutPrefix(c.want, "!"); isErr {
				if r.code != 1 || r.stdout != "" || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, want) {
					t.Errorf("%s: cat %s: exit %d %q %q, want exit 1 and one line with %q", how, c.path, r.code, r.stdout, r.stderr, want)
				}
			} else if r.code != 0 || r.stdout != c.want {
				t.Errorf("%s: cat %s: exit %d %q %s, want %q", how, c.path, r.code, r.stdout, r.stderr, c.want)
			}
		}
		// ls through a symlink to the root lists the guest's etc, not
		// the host's.
		r := cairn(t, vault, "ls", "web@latest:vda/etc/root/etc")
		if r.code != 0 || !strings.Contains(r.stdout, " passwd\n") || strings.Contains(r.stdout, "hostname") || strings.Contains(r.stdout, "os-release") {
			t.Errorf("%s: ls of etc through a symlink: exit %d\n%s%s", how, r.code, r.stdout, r.stderr)
		}
		// Hostile names are quoted, one entry a line; --json has them as
		// they are.
		for _, want := range []string{` "evil\nname"` + "\n", ` "esc\x1b]0;owned\a"` + "\n", ` "tab\tname"` + "\n"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("%s: ls does not show %q quoted:\n%s", how, want, r.stdout)
			}
		}
		if strings.ContainsAny(r.stdout, "\x1b\x07\t") || strings.Count(r.stdout, "\n") != 12 {
			t.Errorf("%s: ls prints control characters, or not one entry a line:\n%q", how, r.stdout)
		}
		var entries []struct{ Name string }
		mustJSON(t, mustCairn(t, vault, "ls", "--json", "web@latest:vda/etc"), &entries)
		found := 0
		for _, e := range entries {
			if e.Name == "evil\nname" || e.Name == "esc\x1b]0;owned\x07" {
				found++
			}
		}
		if found != 2 {
			t.Errorf("%s: ls --json: %+v", how, entries)
		}
	}
	checkCat("without a daemon")
	// Names that are steps along a path get the same answer with a
	// daemon as without.
	nameArgs := [][]string{{"show", ".."}, {"show", "."}, {"policy", "show", ".."}, {"policy", "rm", "."},
		{"policy", "show", "nope"}, {"run", ".."}, {"points", ".."}, {"job", "show", ".."}}
	alone := map[string]result{}
	for _, args := range nameArgs {
		r := cairn(t, vault, args...)
		if r.code == 0 || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%v: exit %d %q, want a failure in one line", args, r.code, r.stderr)
		}
		alone[strings.Join(args, " ")] = r
	}
	// Restore and export targets inside the vault are refused; outside,
	// they work.
	vlink := filepath.Join(dir, "vlink")
	must(os.Symlink(vault, vlink))
	outside := filepath.Join(dir, "out")
	must(os.Mkdir(outside, 0o700))
	checkTargets := func(how string) {
		t.Helper()
		for _, args := range [][]string{
			{"restore", "--force", "web@latest", config},
			{"restore", "--force", "web@latest", vault},
			{"restore", "--force", "web@latest", filepath.Join(vault, "packs")},
			{"restore", "--force", "web@latest", filepath.Join(vlink, "cairn.json")},
			{"restore", "--force", "web@latest", filepath.Join(vlink, "..", "vault", "cairn.json")},
			{"export", "--force", "web@latest", "--format", "raw", "-o", config},
			{"export", "web@latest", "--format", "qcow2", "-o", filepath.Join(vlink, "points", "x.qcow2")},
		} {
			r := cairn(t, vault, args...)
			if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "inside the vault") {
				t.Errorf("%s: %v: exit %d %q, want exit 1 and one line saying inside the vault", how, args, r.code, r.stderr)
			}
		}
		if b, err := os.ReadFile(config); err != nil || !bytes.Equal(b, configBefore) {
			t.Fatalf("%s: the vault's config changed: %v", how, err)
		}
		out := filepath.Join(outside, "vda.raw")
		os.Remove(out)
		mustCairn(t, vault, "restore", "web@latest", outside)
		sameFile(t, img, out)
		mustCairn(t, vault, "export", "--force", "web@latest", "--format", "raw", "--compress", "none", "-o", out)
		sameFile(t, img, out)
	}
	checkTargets("without a daemon")

	// A socket in a folder every user may walk to, and a metrics
	// listener.
	sockDir, err := os.MkdirTemp("", "cairn-hostile-")
	must(err)
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	os.Chmod(sockDir, 0o755)
	sock := filepath.Join(sockDir, "cairn.sock")
	addr := freePort(t)
	d := startDaemon(t, vault, "--socket", sock, "--listen", addr)
	t.Setenv("CAIRN_SOCKET", sock)
	checkCat("through the daemon")
	for _, args := range nameArgs {
		r, want := cairn(t, vault, args...), alone[strings.Join(args, " ")]
		if args[0] == "job" { // without a daemon there are no jobs
			want.stderr = "cairn: no such job: ..\n"
		}
		if r.code != want.code || r.stderr != want.stderr {
			t.Errorf("%v through the daemon: exit %d %q; without one: exit %d %q", args, r.code, r.stderr, want.code, want.stderr)
		}
	}
	checkTargets("through the daemon")

	// Raw requests: every answer but a 200 is one line of JSON error.
	esc := url.PathEscape
	q := url.QueryEscape
	long := strings.Repeat("a", 100_000)
	type probe struct {
		method, target, body string
		header               map[string]string
		statuses             []int
	}
	var probes []probe
	add := func(method, target, body string, statuses ...int) {
		probes = append(probes, probe{method: method, target: target, body: body, statuses: statuses})
	}
	names := []string{"..", ".", "../..", "../../etc/passwd", "/etc/passwd", "web/../..", "web@../../x",
		"web@latest/../../..", "a\x00b", "web@latest\x00", "%2e%2e", long, "web\n@latest"}
	for _, n := range names {
		rawDots := strings.ReplaceAll(esc(n), ".", "%2e")
		add("GET", "/v1/points/"+esc(n), "", 404)
		add("GET", "/v1/points/"+rawDots, "", 404)
		add("GET", "/v1/points?resource="+q(n), "", 400, 404)
		add("GET", "/v1/jobs/"+rawDots, "", 404)
		add("GET", "/v1/policies/"+rawDots, "", 400, 404)
		add("DELETE", "/v1/policies/"+rawDots, "", 400, 404)
		pol, _ := json.Marshal(map[string]any{"name": n, "sources": []map[string]string{{"disk": "vda", "path": img}},
			"schedule": map[string]string{"every": "1h"}, "retention": map[string]int{"keep_last": 1}})
		add("PUT", "/v1/policies/"+rawDots, string(pol), 400)
		add("GET", "/v1/ls?ref="+q(n), "", 400, 404, 500)
		add("GET", "/v1/cat?ref="+q(n), "", 400, 404, 500)
		add("GET", "/v1/cat?ref="+q(point+":"+n), "", 400, 404, 500)
		backup, _ := json.Marshal(map[string]any{"kind": "backup", "params": map[string]any{"name": n,
			"disks": []map[string]string{{"name": "vda", "path": img}}}})
		add("POST", "/v1/jobs", string(backup), 400)
		disk, _ := json.Marshal(map[string]any{"kind": "backup", "params": map[string]any{"name": "web",
			"disks": []map[string]string{{"name": n, "path": img}}}})
		add("POST", "/v1/jobs", string(disk), 400)
		run, _ := json.Marshal(map[string]any{"kind": "run", "params": map[string]string{"policy": n}})
		add("POST", "/v1/jobs", string(run), 400)
	}
	for _, target := range []string{"relative.img", "", config, vault, filepath.Join(vlink, "cairn.json")} {
		b, _ := json.Marshal(map[string]any{"kind": "restore", "params": map[string]any{"point": point, "target": target, "force": true}})
		add("POST", "/v1/jobs?follow=true", string(b), 200, 400)
		b, _ = json.Marshal(map[string]any{"kind": "export", "params": map[string]any{"point": point, "format": "raw", "output": target, "force": true}})
		add("POST", "/v1/jobs?follow=true", string(b), 200, 400)
	}
	add("POST", "/v1/jobs", `{"kind":"backup","params":{"name":"web","disks":[{"name":"vda","path":"etc/passwd"}]}}`, 400)
	add("POST", "/v1/jobs", `{"kind":"verify","params":{"data":true},"x":"`+strings.Repeat("x", 2<<20)+`"}`, 400)
	add("POST", "/v1/export", `{"point":"`+point+`","format":"raw","output":"`+filepath.Join(outside, "x.raw")+`"}`, 400)
	add("GET", "/v1/policies/nope", "", 404)
	add("DELETE", "/v1/policies/nope", "", 404)
	add("GET", "/v1/../../../etc/passwd", "", 404)
	add("GET", "/v1/%2e%2e/%2e%2e/etc/passwd", "", 404)
	add("GET", "/v1//etc/passwd", "", 404)
	for _, v := range []string{"/", "/etc", vault + "/..", filepath.Join(vault, "packs")} {
		probes = append(probes, probe{method: "GET", target: "/v1/points", header: map[string]string{"Cairn-Vault": v}, statuses: []int{421}})
	}
	for _, p := range probes {
		status, body := rawAPI(t, sock, p.method, p.target, p.header, p.body)
		what := fmt.Sprintf("%s %.100q %.100q", p.method, p.target, p.body)
		if leaks(body) {
			t.Errorf("%s: the host's file in the answer: %.300q", what, body)
		}
		ok := false
		for _, s := range p.statuses {
			ok = ok || s == status
		}
		if !ok {
			t.Errorf("%s: %d %.300s, want one of %v", what, status, body, p.statuses)
			continue
		}
		if status == 200 { // a followed job: it must not succeed
			if !strings.Contains(body, `"event":"end"`) || strings.Contains(body, `"state":"succeeded"`) || !strings.Contains(body, "inside the vault") {
				t.Errorf("%s: %s", what, body)
			}
			continue
		}
		var e struct {
			Error    string `json:"error"`
			ExitCode int    `json:"exit_code"`
		}
		if json.Unmarshal([]byte(body), &e) != nil || e.Error == "" || strings.Count(strings.TrimSpace(body), "\n") != 0 ||
			(status == 400) != (e.ExitCode == 2) {
			t.Errorf("%s: %d %.300q, want one line of JSON error, exit code 2 exactly for 400", what, status, body)
		}
	}
	t.Logf("%d raw requests", len(probes))

	// Another uid, through a socket whose mode lets it in: refused
	// whatever it asks (SO_PEERCRED), and nothing it asked for happens.
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the check of another uid needs root")
		}
		t.Log("not root: the check of another uid is left out")
	} else {
		needTool(t, "curl")
		must(os.Chmod(sock, 0o666))
		hooked := filepath.Join(sockDir, "hook-ran")
		evil, _ := json.Marshal(map[string]any{"name": "evil", "sources": []map[string]string{{"disk": "vda", "path": "/etc/shadow"}},
			"schedule": map[string]string{"every": "1m"}, "retention": map[string]int{"keep_last": 1},
			"pre_hook": []string{"/bin/sh", "-c", "id > " + hooked}})
		for _, c := range []struct{ method, path, body string }{
			{"PUT", "/policies/evil", string(evil)},
			{"POST", "/jobs", `{"kind":"backup","params":{"name":"stolen","disks":[{"name":"vda","path":"/etc/shadow"}]}}`},
			{"POST", "/jobs", `{"kind":"restore","params":{"point":"` + point + `","target":"` + filepath.Join(sockDir, "x.img") + `"}}`},
			{"POST", "/export", `{"point":"` + point + `","format":"raw"}`},
			{"GET", "/cat?ref=" + q(point+":vda/etc/passwd"), ""},
			{"GET", "/status", ""},
			{"DELETE", "/policies/evil", ""},
			{"PUT", "/vault", `{"capacity":1}`},
		} {
			status, b := curlAPI(t, otherID, sock, c.method, c.path, c.body)
			if status != 403 || !strings.Contains(b, fmt.Sprintf("uid %d may not use this daemon", otherID)) ||
				strings.Count(strings.TrimSpace(b), "\n") != 0 || strings.Contains(b, "guest passwd") {
				t.Errorf("%s %s as uid %d: %d %s, want 403 and one line", c.method, c.path, otherID, status, b)
			}
		}
		// cairn itself, run as that uid and led to the daemon.
		bin := filepath.Join(sockDir, "cairn")
		sh(t, "cp", cairnBin, bin)
		env := []string{"CAIRN_SOCKET=" + sock, "CAIRN_VAULT="}
		for _, args := range [][]string{{"points"}, {"backup", "--name", "stolen", "vda=/etc/shadow"},
			{"cat", point + ":vda/etc/passwd"}, {"policy", "set", "evil", "--source", "vda=/etc/shadow", "--every", "1h", "--keep-last", "1"}} {
			out, stderr, err := asOther(t, env, bin, args...)
			want := fmt.Sprintf("cairn: forbidden: uid %d may not use this daemon (root and uid 0 may)\n", otherID)
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || out != "" || stderr != want {
				t.Errorf("cairn %v as uid %d: %v %q %q, want exit 1 and %q", args, otherID, err, out, stderr, want)
			}
		}
		must(os.Chmod(sock, 0o600))
		time.Sleep(100 * time.Millisecond) // a hook started by mistake would have run
		if _, err := os.Stat(hooked); err == nil {
			t.Error("a hook of a policy another uid set ran")
		}
		if n := strings.Count(d.log.String(), "refused "); n < 12 {
			t.Errorf("%d refusals in the daemon's log, want at least 12:\n%s", n, d.log)
		}
	}
	if b, err := os.ReadFile(config); err != nil || !bytes.Equal(b, configBefore) {
		t.Fatalf("the vault's config changed: %v", err)
	}
	// Nothing was made: no point, no policy, no file beside the vault.
	var pts []pointJSON
	mustJSON(t, mustCairn(t, vault, "points", "--json"), &pts)
	if len(pts) != 1 || pts[0].Point != point {
		t.Errorf("points after the probes: %+v", pts)
	}
	if out := mustCairn(t, vault, "policy", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("policies after the probes: %s", out)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 6 { // host-secret tree vda.img vault vlink out
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("files beside the vault: %v", names)
	}
	// The metrics listener serves /metrics only.
	for _, path := range []string{"/v1/cat?ref=" + q(point+":vda/etc/passwd"), "/v1/points", "/metrics/../v1/version"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 || strings.Contains(string(b), "passwd") {
			t.Errorf("metrics listener GET %s: %d %.200q, want 404", path, resp.StatusCode, b)
		}
	}
	if st, b := rawAPI(t, sock, "GET", "/v1/version", nil, ""); st != 200 || strings.Contains(d.log.String(), "panic") {
		t.Errorf("the daemon after the probes: %d %s\n%s", st, b, d.log)
	}
	mustCairn(t, vault, "verify", "--data")
}

// TestDaemonSocketPathHoldsAFile: a --socket naming a file that is not
// a socket is refused in one line, and the file stays; a stale socket
// is replaced.
func TestDaemonSocketPathHoldsAFile(t *testing.T) {
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	mustCairn(t, vault, "init")
	precious := filepath.Join(dir, "precious")
	if err := os.WriteFile(precious, []byte("keep me\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A daemon that starts serving there is stopped after a while.
	cmd := exec.Command(cairnBin, "daemon", "--socket", precious)
	cmd.Env = append(os.Environ(), "CAIRN_VAULT="+vault)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(10*time.Second, func() { cmd.Process.Signal(syscall.SIGTERM) })
	err := cmd.Wait()
	timer.Stop()
	if b, err := os.ReadFile(precious); err != nil || string(b) != "keep me\n" {
		t.Errorf("the daemon removed or changed the file at --socket: %v %q", err, b)
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || strings.Count(stderr.String(), "\n") != 1 ||
		!strings.Contains(stderr.String(), "not a socket") {
		t.Errorf("daemon --socket on a file: %v %q, want exit 1 and one line", err, stderr.String())
	}
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	d := startDaemon(t, vault, "--socket", stale)
	if !strings.Contains(d.log.String(), "removed stale socket") {
		t.Errorf("no word of the stale socket:\n%s", d.log)
	}
}
