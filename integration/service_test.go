package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// freePort returns a loopback port nobody listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// scrape reads the daemon's /metrics with Prometheus' own parser.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	return fams
}

// metricValue returns the value of the sample of family name whose
// labels include all of want, and whether there is one.
func metricValue(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

type statusJSON struct {
	Daemon   bool `json:"daemon"`
	Policies []struct {
		Policy struct {
			Name string `json:"name"`
		} `json:"policy"`
		State struct {
			LastResult string `json:"last_result"`
			LastPoint  string `json:"last_point"`
		} `json:"state"`
		Next *time.Time `json:"next_run"`
	} `json:"policies"`
}

// TestPolicyRunsOnItsSchedule sets a policy an hour and a half "ago"
// (CAIRN_NOW), so that a daemon started now finds its slot missed and
// runs it at once, as it does after downtime; then checks the run
// everywhere a user looks: points, jobs, status, the policy, the API over
// curl and the Prometheus metrics, and that policies are edited through
// the running daemon.
func TestPolicyRunsOnItsSchedule(t *testing.T) {
	needTool(t, "curl")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	mustCairn(t, vault, "init")
	disk := filepath.Join(dir, "web.img")
	if err := os.WriteFile(disk, bytes.Repeat([]byte("cairn web01 "), 200000), 0o600); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-90 * time.Minute).UTC().Format(time.RFC3339)
	set := exec.Command(cairnBin, "policy", "set", "web01", "--source", "vda="+disk, "--every", "1h", "--keep-last", "2")
	set.Env = append(os.Environ(), "CAIRN_VAULT="+vault, "CAIRN_NOW="+past)
	if out, err := set.CombinedOutput(); err != nil {
		t.Fatalf("policy set: %v\n%s", err, out)
	}
	// Before a daemon runs: status says so and shows the policy.
	var st statusJSON
	mustJSON(t, mustCairn(t, vault, "status", "--json"), &st)
	if st.Daemon || len(st.Policies) != 1 || st.Policies[0].State.LastResult != "" {
		t.Fatalf("status without a daemon: %+v", st)
	}

	addr := freePort(t)
	d := startDaemon(t, vault, "--listen", addr)
	if !waitFor(30*time.Second, func() bool {
		return strings.Contains(d.log.String(), "run web01 (schedule) succeeded")
	}) {
		t.Fatalf("the missed slot did not run:\n%s", d.log)
	}
	var points []struct {
		Point   string `json:"point"`
		Trigger string `json:"trigger"`
	}
	mustJSON(t, mustCairn(t, vault, "points", "--json"), &points)
	if len(points) != 1 || points[0].Trigger != "policy web01" {
		t.Fatalf("points after the scheduled run: %+v", points)
	}
	mustJSON(t, mustCairn(t, vault, "status", "--json"), &st)
	if !st.Daemon || len(st.Policies) != 1 || st.Policies[0].State.LastResult != "success" ||
		st.Policies[0].State.LastPoint != points[0].Point || st.Policies[0].Next == nil || !st.Policies[0].Next.After(time.Now()) {
		t.Fatalf("status after the run: %+v", st)
	}
	var jobs []struct {
		Kind, Target, Trigger, State string
	}
	mustJSON(t, mustCairn(t, vault, "jobs", "--json"), &jobs)
	if len(jobs) != 1 || jobs[0].Kind != "run" || jobs[0].Trigger != "schedule" || jobs[0].State != "succeeded" {
		t.Fatalf("jobs: %+v", jobs)
	}
	fams := scrape(t, addr)
	if v, ok := metricValue(fams, "cairn_policy_last_run_success", map[string]string{"policy": "web01"}); !ok || v != 1 {
		t.Errorf("cairn_policy_last_run_success{policy=web01} = %v, %v", v, ok)
	}
	if v, ok := metricValue(fams, "cairn_jobs_total", map[string]string{"kind": "run", "result": "succeeded"}); !ok || v != 1 {
		t.Errorf("cairn_jobs_total{run,succeeded} = %v, %v", v, ok)
	}
	if v, ok := metricValue(fams, "cairn_vault_points", nil); !ok || v != 1 {
		t.Errorf("cairn_vault_points = %v, %v", v, ok)
	}
	if ts, ok := metricValue(fams, "cairn_policy_last_success_timestamp_seconds", map[string]string{"policy": "web01"}); !ok ||
		time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Errorf("last success timestamp %v, %v", ts, ok)
	}

	// cairn run through the daemon: a job of its own, the log on stderr.
	r := cairn(t, vault, "run", "web01")
	if r.code != 0 || !strings.Contains(r.stderr, "backed up web01@") || !strings.HasPrefix(r.stdout, "web01@") {
		t.Fatalf("cairn run: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	// Policies change through the daemon: the API, over curl.
	sock := filepath.Join(vault, "cairn.sock")
	curl := func(args ...string) (string, int) {
		t.Helper()
		out := sh(t, "curl", append([]string{"-s", "-w", "\n%{http_code}", "--unix-socket", sock}, args...)...)
		i := strings.LastIndexByte(out, '\n')
		code, _ := strconv.Atoi(out[i+1:])
		return out[:i], code
	}
	body, code := curl("http://cairn/v1/policies/web01")
	var got struct {
		Policy struct {
			Sources []struct{ Disk, Path string } `json:"sources"`
		} `json:"policy"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &got) != nil || len(got.Policy.Sources) != 1 || got.Policy.Sources[0].Path != disk {
		t.Fatalf("GET /v1/policies/web01: %d %s", code, body)
	}
	if body, code := curl("-X", "PUT", "-d", `{"name":"web01","sources":[],"schedule":{"every":"1h"},"retention":{"keep_last":1}}`,
		"http://cairn/v1/policies/web01"); code != 400 || !strings.Contains(body, "source") {
		t.Errorf("PUT of a policy without sources: %d %s", code, body)
	}
	if body, code := curl("-X", "PUT", "-d", `{"name":"other","sources":[{"path":"`+disk+`"}],"schedule":{"every":"1h"},"retention":{"keep_last":1}}`,
		"http://cairn/v1/policies/web01"); code != 400 {
		t.Errorf("PUT of another name: %d %s", code, body)
	}
	mustCairn(t, vault, "policy", "set", "db01", "--source", disk, "--at", "03:00", "--keep-daily", "3", "--paused")
	if !strings.Contains(d.log.String(), "policy db01 set for a client") {
		t.Errorf("the daemon did not set the policy:\n%s", d.log)
	}
	out := mustCairn(t, vault, "policy", "list")
	if !strings.Contains(out, "db01") || !strings.Contains(out, "paused") || !strings.Contains(out, "web01") {
		t.Errorf("policy list:\n%s", out)
	}
	var removed struct{ Removed string }
	if body, code := curl("-X", "DELETE", "http://cairn/v1/policies/db01"); code != 200 || json.Unmarshal([]byte(body), &removed) != nil || removed.Removed != "db01" {
		t.Errorf("DELETE /v1/policies/db01: %d %s", code, body)
	}
	if r := cairn(t, vault, "policy", "show", "db01"); r.code != 1 || !strings.Contains(r.stderr, "no such policy") {
		t.Errorf("show of a removed policy: exit %d %s", r.code, r.stderr)
	}
}

// TestHookMakesTheBackupConsistent backs up an ext4 image that a writer
// keeps changing (it rewrites a file in it with debugfs, over and over).
// The policy's pre-hook pauses the writer and waits until it has, noting
// the last value written; the post-hook lets it go on. The point must
// hold exactly that value, read through the mount, and a filesystem that
// e2fsck finds clean; it says it is application-consistent.
func TestHookMakesTheBackupConsistent(t *testing.T) {
	needTool(t, "mkfs.ext4", "debugfs", "e2fsck")
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	mustCairn(t, vault, "init", "--chunk-size", "4K")
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(tree, 0o755)
	os.WriteFile(filepath.Join(tree, "counter.txt"), []byte("0\n"), 0o644)
	img := filepath.Join(dir, "db.img")
	sh(t, "mkfs.ext4", "-q", "-F", "-d", tree, img, "16M")

	// The writer: while no pause file exists, write the next value into
	// the image (debugfs -w), then record it in last; when paused, say so.
	writer := fmt.Sprintf(`n=0
while [ ! -e %[1]s/stop ]; do
  if [ -e %[1]s/pause ]; then touch %[1]s/paused; sleep 0.01; continue; fi
  rm -f %[1]s/paused
  n=$((n+1)); echo $n > %[1]s/value
  printf 'rm counter.txt\nwrite %[1]s/value counter.txt\n' | debugfs -w -f - %[2]s >/dev/null 2>&1
  echo $n > %[1]s/last
done`, dir, img)
	w := exec.Command("/bin/sh", "-c", writer)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { os.WriteFile(filepath.Join(dir, "stop"), nil, 0o600); w.Wait() }()
	if !waitFor(10*time.Second, func() bool { _, err := os.Stat(filepath.Join(dir, "last")); return err == nil }) {
		t.Fatal("the writer does not write")
	}
	pre := fmt.Sprintf(`touch %[1]s/pause; while [ ! -e %[1]s/paused ]; do sleep 0.01; done; cp %[1]s/last %[1]s/expected`, dir)
	post := fmt.Sprintf(`rm -f %[1]s/pause; echo "$CAIRN_RESULT $CAIRN_POINT" > %[1]s/post`, dir)
	mustCairn(t, vault, "policy", "set", "db", "--source", "vda="+img, "--every", "1d", "--keep-last", "5",
		"--pre-hook", "sh -c '"+pre+"'", "--post-hook", "sh -c '"+post+"'", "--hook-timeout", "20s")
	os.Mkdir(filepath.Join(dir, "mnt"), 0o755)
	startDaemon(t, vault, "--mount", filepath.Join(dir, "mnt"))
	for round := 0; round < 3; round++ {
		out := strings.TrimSpace(mustCairn(t, vault, "run", "db"))
		expected, _ := os.ReadFile(filepath.Join(dir, "expected"))
		postSaw, _ := os.ReadFile(filepath.Join(dir, "post"))
		if string(postSaw) != "success "+out+"\n" {
			t.Fatalf("round %d: the post-hook saw %q, want success %s", round, postSaw, out)
		}
		var show struct {
			Consistency string `json:"consistency"`
		}
		mustJSON(t, mustCairn(t, vault, "show", out, "--json"), &show)
		if show.Consistency != "application" {
			t.Errorf("round %d: %s is %q-consistent", round, out, show.Consistency)
		}
		_, id, _ := strings.Cut(out, "@")
		got, err := os.ReadFile(filepath.Join(dir, "mnt", "db", id, "vda", "counter.txt"))
		if err != nil || string(got) != string(expected) {
			t.Fatalf("round %d: the point's counter.txt is %q (%v), the writer was paused at %q", round, got, err, expected)
		}
		restored := filepath.Join(dir, "restored.img")
		mustCairn(t, vault, "restore", out, restored)
		if out, err := exec.Command("e2fsck", "-fn", restored).CombinedOutput(); err != nil {
			t.Fatalf("round %d: e2fsck of the point: %v\n%s", round, err, out)
		}
		os.Remove(restored)
		// Let the writer write some more before the next round.
		last, _ := os.ReadFile(filepath.Join(dir, "last"))
		waitFor(10*time.Second, func() bool { b, _ := os.ReadFile(filepath.Join(dir, "last")); return string(b) != string(last) })
	}
}

// TestCancelRunAnywhere cancels runs of a policy with hooks at random
// moments: in the freeze hook, in the backup, in the thaw hook. Whatever
// the moment, the thaw hook has run when the job ends, no point is left
// half made (verify passes, and the points are those of the runs that
// finished), and the next run succeeds.
func TestCancelRunAnywhere(t *testing.T) {
	dir := t.TempDir()
	vault := filepath.Join(dir, "vault")
	mustCairn(t, vault, "init")
	disk := bigImage(t, 7, 96<<20)
	thawed := filepath.Join(dir, "thawed")
	mustCairn(t, vault, "policy", "set", "vm", "--source", disk, "--every", "1d", "--keep-last", "50",
		"--pre-hook", "sh -c 'sleep 0.3'", "--post-hook", "sh -c 'sleep 0.2; echo $CAIRN_RESULT >> "+thawed+"'")
	startDaemon(t, vault)
	rnd := rand.New(rand.NewSource(time.Now().UnixNano()))
	finished := 0
	for i := 0; i < 6; i++ {
		cmd := exec.Command(cairnBin, "run", "vm", "--json")
		cmd.Env = append(os.Environ(), "CAIRN_VAULT="+vault)
		var stdout bytes.Buffer
		cmd.Stdout = &stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(rnd.Intn(1500)) * time.Millisecond
		time.Sleep(delay)
		id := ""
		var running []struct{ ID, Kind, State string }
		mustJSON(t, mustCairn(t, vault, "jobs", "--json"), &running)
		for _, j := range running {
			if j.Kind == "run" && j.State == "running" {
				id = j.ID
			}
		}
		if id != "" {
			cairn(t, vault, "cancel", id) // it may have ended meanwhile
		}
		err := cmd.Wait()
		lines, _ := os.ReadFile(thawed)
		if n := strings.Count(string(lines), "\n"); n != i+1 {
			t.Fatalf("run %d (cancel after %v): the thaw hook ran %d times in %d runs", i, delay, n, i+1)
		}
		if err == nil {
			finished++
		}
		t.Logf("run %d: cancel after %v: %v, thaw saw %q", i, delay, err, strings.Split(strings.TrimSpace(string(lines)), "\n")[i])
	}
	var points []struct{ Point string }
	mustJSON(t, mustCairn(t, vault, "points", "--json"), &points)
	if len(points) != finished {
		t.Errorf("%d points after %d finished runs", len(points), finished)
	}
	mustCairn(t, vault, "verify", "--data")
	mustCairn(t, vault, "run", "vm")
}
