package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// curlAPI calls the daemon's API on sock with curl, as uid when uid is
// not 0, and returns the status and the body.
func curlAPI(t *testing.T, uid uint32, sock, method, path, body string) (int, string) {
	t.Helper()
	args := []string{"-sS", "--unix-socket", sock, "-X", method, "-w", "\n%{http_code}"}
	if body != "" {
		args = append(args, "-H", "Content-Type: application/json", "-d", body)
	}
	cmd := exec.Command("curl", append(args, "http://cairn/v1"+path)...)
	if uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %s %s: %v\n%s", method, path, err, out)
	}
	s := string(out)
	i := strings.LastIndexByte(s, '\n')
	status, err := strconv.Atoi(s[i+1:])
	if err != nil {
		t.Fatalf("curl %s %s: no status in %q", method, path, s)
	}
	return status, s[:i]
}

// apiJob is a job as the API shows it.
type apiJob struct {
	ID       string          `json:"id"`
	Kind     string          `json:"kind"`
	Target   string          `json:"target"`
	Trigger  string          `json:"trigger"`
	State    string          `json:"state"`
	Error    string          `json:"error"`
	ExitCode int             `json:"exit_code"`
	Result   json.RawMessage `json:"result"`
	Log      []string        `json:"log"`
	Progress struct {
		Done  int64 `json:"done"`
		Total int64 `json:"total"`
	} `json:"progress"`
}

// TestAPI drives the daemon's API with curl: version, status, points, a
// backup job streamed to its end, a job started and then cancelled
// (nothing committed, the vault verifies, the next backup succeeds), a
// job whose client hangs up, the jobs list, bad requests, and a peer of
// another uid refused even where the socket's mode lets it in.
func TestAPI(t *testing.T) {
	needTool(t, "curl")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	disk := createSized(t, filepath.Join(dir, "small.img"), 4<<20)
	scribble(t, disk, 5, 8, 64<<10, 0, 4<<20)
	big := bigImage(t, 1, 384<<20)
	mustCairn(t, vault, "init", "--chunk-size", "64K")
	first := strings.TrimSpace(mustCairn(t, vault, "backup", "--name", "small", disk))

	// A socket another user can reach, for the uid check below.
	sockDir, err := os.MkdirTemp("", "cairn-api-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	os.Chmod(sockDir, 0o755)
	sock := filepath.Join(sockDir, "cairn.sock")
	d := startDaemon(t, vault, "--socket", sock)
	call := func(method, path, body string, wantStatus int, out any) string {
		t.Helper()
		status, b := curlAPI(t, 0, sock, method, path, body)
		if status != wantStatus {
			t.Fatalf("%s %s: %d %s, want %d", method, path, status, b, wantStatus)
		}
		if out != nil {
			mustJSON(t, b, out)
		}
		return b
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v, want mode 0600", fi, err)
	}

	var version struct{ Version, API string }
	call("GET", "/version", "", 200, &version)
	want := strings.TrimPrefix(strings.TrimSpace(mustCairn(t, vault, "--version")), "cairn ")
	if version.Version != want || version.API != "v1" {
		t.Errorf("version %+v, want %s and v1", version, want)
	}
	var status struct {
		PID      int    `json:"pid"`
		Vault    string `json:"vault"`
		Capacity struct {
			Used int64 `json:"used"`
		} `json:"capacity"`
		Jobs []apiJob `json:"jobs"`
	}
	call("GET", "/status", "", 200, &status)
	if status.PID != d.cmd.Process.Pid || status.Vault != vault || status.Capacity.Used <= 0 || status.Jobs == nil {
		t.Errorf("status %+v", status)
	}
	var points struct {
		Points []pointJSON `json:"points"`
	}
	call("GET", "/points", "", 200, &points)
	if len(points.Points) != 1 || points.Points[0].Point != first {
		t.Errorf("points: %+v", points)
	}
	// The same view as show --json, with the daemon's vault open.
	var shown pointJSON
	call("GET", "/points/"+first, "", 200, &shown)
	if shown.Point != first {
		t.Errorf("point: %+v", shown)
	}

	// A backup, its events streamed to its end.
	scribble(t, disk, 6, 2, 64<<10, 0, 4<<20)
	cmd := exec.Command("curl", "-sSN", "--unix-socket", sock, "-X", "POST", "-d",
		`{"kind":"backup","params":{"name":"small","disks":[{"name":"small","path":"`+disk+`"}]}}`,
		"http://cairn/v1/jobs?follow=true")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("followed backup: %v", err)
	}
	var kinds []string
	var result pointJSON
	var end apiJob
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var ev struct {
			Event  string          `json:"event"`
			Job    apiJob          `json:"job"`
			Result json.RawMessage `json:"result"`
		}
		mustJSON(t, line, &ev)
		if len(kinds) == 0 || kinds[len(kinds)-1] != ev.Event {
			kinds = append(kinds, ev.Event)
		}
		switch ev.Event {
		case "result":
			mustJSON(t, string(ev.Result), &result)
		case "end":
			end = ev.Job
		}
	}
	if got := strings.Join(kinds, ","); !regexp.MustCompile(`^started,(log,|progress,)*result,end$`).MatchString(got) {
		t.Errorf("events %s:\n%s", got, out)
	}
	if end.State != "succeeded" || end.Kind != "backup" || end.Target != "small" || end.Trigger != "manual" ||
		result.Type != "incremental" || !strings.HasPrefix(result.Point, "small@") {
		t.Errorf("backup job %+v, result %+v", end, result)
	}
	if n := strings.Count(d.log.String(), "job "+end.ID+" "); n != 1 || !strings.Contains(d.log.String(), "job "+end.ID+" backup small succeeded in ") {
		t.Errorf("%d lines for job %s in the daemon's log, want one:\n%s", n, end.ID, d.log)
	}

	// A job started without a client following it, then cancelled.
	pointList := func() string {
		t.Helper()
		var v struct {
			Points json.RawMessage `json:"points"`
		}
		call("GET", "/points", "", 200, &v)
		return string(v.Points)
	}
	before := pointList()
	var job apiJob
	call("POST", "/jobs", `{"kind":"backup","params":{"name":"big","disks":[{"name":"vda","path":"`+big+`"}]}}`, 202, &job)
	if job.State != "running" || job.ID == "" {
		t.Fatalf("started job: %+v", job)
	}
	if !waitFor(10*time.Second, func() bool {
		call("GET", "/jobs/"+job.ID, "", 200, &job)
		return job.Progress.Done > 0 || job.State != "running"
	}) || job.State != "running" {
		t.Fatalf("job did not get going: %+v", job)
	}
	start := time.Now()
	call("POST", "/jobs/"+job.ID+"/cancel", "", 200, &job)
	if took := time.Since(start); job.State != "canceled" || job.ExitCode != 130 || took > 2*time.Second {
		t.Errorf("cancel answered after %v: %+v; want canceled within 2s", took, job)
	}
	call("GET", "/jobs/"+job.ID, "", 200, &job)
	if job.State != "canceled" || job.Error != "canceled by cairn cancel" || len(job.Log) == 0 {
		t.Errorf("cancelled job: %+v", job)
	}
	if after := pointList(); after != before {
		t.Errorf("a cancelled backup changed the points:\n%s\nwas\n%s", after, before)
	}
	status2, b := curlAPI(t, 0, sock, "POST", "/jobs/"+job.ID+"/cancel", "")
	if status2 != 409 || !strings.Contains(b, `"exit_code":1`) {
		t.Errorf("cancel of a cancelled job: %d %s", status2, b)
	}
	viaSock := []string{"CAIRN_SOCKET=" + sock}
	if r := cairnWith(t, viaSock, "verify"); r.code != 0 {
		t.Errorf("verify after a cancelled backup: %d %s%s", r.code, r.stdout, r.stderr)
	}

	// A client that hangs up cancels the job it follows.
	follow := exec.Command("curl", "-sSN", "--unix-socket", sock, "-X", "POST", "-d",
		`{"kind":"backup","params":{"name":"hangup","disks":[{"name":"vda","path":"`+big+`"}]}}`, "http://cairn/v1/jobs?follow=true")
	stdout, _ := follow.StdoutPipe()
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	var started struct{ Job apiJob }
	mustJSON(t, line, &started)
	follow.Process.Kill()
	follow.Wait()
	call("GET", "/jobs/"+started.Job.ID+"?wait=10s", "", 200, &job)
	if job.State != "canceled" || !strings.Contains(job.Error, "client") {
		t.Errorf("job of a client that hung up: %+v", job)
	}
	if after := pointList(); after != before {
		t.Errorf("a backup whose client hung up changed the points:\n%s\nwas\n%s", after, before)
	}

	// The next backup succeeds and commits.
	r := cairnWith(t, viaSock, "backup", "--name", "big", "vda="+big)
	if r.code != 0 {
		t.Fatalf("backup after a cancelled one: %d %s", r.code, r.stderr)
	}
	var jobs []apiJob
	call("GET", "/jobs?all=true", "", 200, &jobs)
	var seen []string
	for _, j := range jobs {
		seen = append(seen, j.Kind+":"+j.State)
	}
	if got := strings.Join(seen, " "); got != "backup:succeeded backup:canceled verify:succeeded backup:canceled backup:succeeded" {
		t.Errorf("jobs: %s", got)
	}

	// Bad requests: 400 and exit code 2; unknown things: 404.
	for _, c := range []struct {
		method, path, body string
		status, code       int
		want               string
	}{
		{"POST", "/jobs", `{"kind":"nope"}`, 400, 2, "kind"},
		{"POST", "/jobs", `{"kind":"backup","params":{"name":"x","bogus":1}}`, 400, 2, "bogus"},
		{"POST", "/jobs", `{"kind":"backup","params":{"name":"no good","disks":[{"name":"a","path":"/x"}]}}`, 400, 2, "--name"},
		{"POST", "/jobs", `{"kind":`, 400, 2, "request body"},
		{"POST", "/jobs?follow=maybe", `{"kind":"gc"}`, 400, 2, "follow"},
		{"GET", "/points/small@nope", "", 404, 1, "no such point"},
		{"GET", "/jobs/nope", "", 404, 1, "no such job"},
		{"POST", "/nbd", `{"point":"` + first + `","disk":"nope"}`, 404, 1, `has no disk "nope" (it has small)`},
		{"GET", "/nothing", "", 404, 1, "no such endpoint"},
		{"DELETE", "/points", "", 405, 1, "not allowed"},
	} {
		status, b := curlAPI(t, 0, sock, c.method, c.path, c.body)
		var e struct {
			Error    string `json:"error"`
			ExitCode int    `json:"exit_code"`
		}
		if json.Unmarshal([]byte(b), &e) != nil || status != c.status || e.ExitCode != c.code ||
			!strings.Contains(e.Error, c.want) || strings.Count(strings.TrimSpace(b), "\n") != 0 {
			t.Errorf("%s %s %s: %d %s; want %d, exit code %d, one line with %q", c.method, c.path, c.body, status, b, c.status, c.code, c.want)
		}
	}

	// Another uid is refused, even through a socket it may open.
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/version", "/points"} {
		status, b := curlAPI(t, 4242, sock, "GET", path, "")
		if status != 403 || !strings.Contains(b, "uid 4242") || strings.Count(strings.TrimSpace(b), "\n") != 0 {
			t.Errorf("GET %s as uid 4242: %d %s, want 403 and one line", path, status, b)
		}
	}
	os.Chmod(sock, 0o600)
	if status, _ := curlAPI(t, 0, sock, "GET", "/version", ""); status != 200 {
		t.Errorf("root after the refusal: %d", status)
	}
	// A streamed stdout, a file that fails after its first byte: both
	// travel as trailers (checked through cairn in the tests comparing
	// commands); here the headers of a stream.
	hdr, err := exec.Command("curl", "-sS", "-D", "-", "-o", "/dev/null", "--unix-socket", sock,
		"http://cairn/v1/cat?ref="+first+":small.raw").Output()
	if err != nil || !bytes.Contains(hdr, []byte("application/octet-stream")) || !bytes.Contains(hdr, []byte("Cairn-Error")) {
		t.Errorf("cat headers: %v\n%s", err, hdr)
	}
}
