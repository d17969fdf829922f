package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/snapshot"
	"github.com/cairn-backup/cairn/snapshot/policy"
)

// runnerFixture is a vault, a disk image and a policy over it whose
// hooks write their environment to files.
type runnerFixture struct {
	v      *snapshot.Vault
	r      *policyRunner
	dir    string
	disk   string
	policy *policy.Policy
}

func newRunnerFixture(t *testing.T, size int) *runnerFixture {
	t.Helper()
	dir := t.TempDir()
	if err := snapshot.Init(filepath.Join(dir, "vault"), snapshot.Config{BlockSize: 64 << 10}, time.Now()); err != nil {
		t.Fatal(err)
	}
	v, err := snapshot.Open(filepath.Join(dir, "vault"), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	disk := filepath.Join(dir, "disk.img")
	b := make([]byte, size)
	rand.New(rand.NewSource(1)).Read(b)
	if err := os.WriteFile(disk, b, 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string {
		if k == "PATH" {
			return os.Getenv("PATH")
		}
		return ""
	}
	post := filepath.Join(dir, "post.env")
	p := &policy.Policy{Name: "vm", Sources: []policy.Source{{Disk: "vda", Path: disk}},
		Schedule:  policy.Schedule{Every: time.Hour},
		Retention: snapshot.Rules{Last: 5},
		PostHook:  []string{"/bin/sh", "-c", "env | grep ^CAIRN_ | sort > " + post},
		Created:   time.Now()}
	p.SetDefaults()
	return &runnerFixture{v: v, r: &policyRunner{v: v, getenv: getenv, clock: time.Now, gcShare: defaultGCShare},
		dir: dir, disk: disk, policy: p}
}

// postEnv reads what the post-hook saw.
func (f *runnerFixture) postEnv(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dir, "post.env"))
	if err != nil {
		t.Fatalf("the post-hook did not run: %v", err)
	}
	out := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(l, "=")
		out[k] = v
	}
	return out
}

func TestPolicyRunHooks(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name        string
		pre         []string
		onFailure   policy.OnFailure
		timeout     time.Duration
		result      policy.Result
		consistency string // of the point made; "" for none
		errWant     string
	}{
		{"freeze works", []string{"/bin/sh", "-c", "echo frozen"}, policy.Abort, 0, policy.Success, snapshot.ConsistencyApplication, ""},
		{"no pre-hook", nil, policy.Abort, 0, policy.Success, snapshot.ConsistencyCrash, ""},
		{"freeze fails, abort", []string{"/bin/sh", "-c", "echo cannot freeze >&2; exit 3"}, policy.Abort, 0, policy.Skipped, "", "exit status 3"},
		{"freeze fails, continue", []string{"/bin/sh", "-c", "exit 3"}, policy.Continue, 0, policy.Success, snapshot.ConsistencyCrash, ""},
		{"freeze hangs past its timeout", []string{"/bin/sleep", "30"}, policy.Abort, 300 * time.Millisecond, policy.Skipped, "", "timed out"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newRunnerFixture(t, 1<<20)
			f.policy.PreHook, f.policy.HookFailure = c.pre, c.onFailure
			if c.timeout > 0 {
				f.policy.HookTimeout = c.timeout
			}
			rep := &testReport{}
			start := time.Now()
			res, err := f.r.run(ctx, f.policy, rep)
			if time.Since(start) > 10*time.Second {
				t.Fatalf("the run took %v", time.Since(start))
			}
			if c.errWant == "" && err != nil || c.errWant != "" && (err == nil || !strings.Contains(err.Error(), c.errWant)) {
				t.Fatalf("run: %v, want an error with %q", err, c.errWant)
			}
			if res.Result != c.result {
				t.Errorf("result %s, want %s (log:\n%s)", res.Result, c.result, rep.log.String())
			}
			points, _ := f.v.Points("vm")
			switch {
			case c.consistency == "" && len(points) != 0:
				t.Errorf("a skipped run made a point")
			case c.consistency != "" && (len(points) != 1 || points[0].Consistency != c.consistency || points[0].Trigger != "policy vm"):
				t.Errorf("points %+v, want one, %s, triggered by the policy", points, c.consistency)
			}
			env := f.postEnv(t)
			if env["CAIRN_RESULT"] != string(c.result) || env["CAIRN_POLICY"] != "vm" || env["CAIRN_HOOK"] != "post" ||
				env["CAIRN_DISKS"] != "vda="+f.disk || env["CAIRN_VAULT"] != f.v.Dir() {
				t.Errorf("post-hook environment %v", env)
			}
			if c.consistency != "" && env["CAIRN_POINT"] != points[0].Name() {
				t.Errorf("CAIRN_POINT %q, want %s", env["CAIRN_POINT"], points[0].Name())
			}
			if c.errWant == "exit status 3" && c.onFailure == policy.Abort && !strings.Contains(rep.log.String(), "cannot freeze") {
				t.Errorf("the hook's output is not in the log:\n%s", rep.log.String())
			}
		})
	}
}

// TestPolicyRunCanceled cancels a run in the middle of its backup: no
// point is committed, the post-hook still thaws, told the run was
// canceled, and the vault verifies.
func TestPolicyRunCanceled(t *testing.T) {
	f := newRunnerFixture(t, 192<<20)
	ctx, cancel := context.WithCancel(context.Background())
	rep := &cancelAt{testReport: &testReport{}, after: 8 << 20, cancel: cancel}
	res, err := f.r.run(ctx, f.policy, rep)
	if !errors.Is(err, context.Canceled) || res.Result != policy.Canceled {
		t.Fatalf("canceled run: %v, result %s", err, res.Result)
	}
	if points, _ := f.v.Points("vm"); len(points) != 0 {
		t.Fatal("a canceled run committed a point")
	}
	if env := f.postEnv(t); env["CAIRN_RESULT"] != "canceled" {
		t.Errorf("post-hook saw CAIRN_RESULT=%q, want canceled", env["CAIRN_RESULT"])
	}
	vr, err := f.v.Verify(context.Background(), snapshot.VerifyOptions{Data: true})
	if err != nil || !vr.OK() {
		t.Fatalf("verify after the cancel: %v %+v", err, vr)
	}
	if res, err := f.r.run(context.Background(), f.policy, &testReport{}); err != nil || res.Result != policy.Success {
		t.Fatalf("the next run: %v %+v", err, res)
	}
}

// cancelAt cancels the run once its backup has read after bytes.
type cancelAt struct {
	*testReport
	after  int64
	cancel func()
}

func (c *cancelAt) Progress(done, total int64) {
	if done >= c.after {
		c.cancel()
	}
}

// testReport keeps a run's log.
type testReport struct{ log bytes.Buffer }

func (r *testReport) Progress(done, total int64)      {}
func (r *testReport) Logf(format string, args ...any) { fmt.Fprintf(&r.log, format+"\n", args...) }
func (r *testReport) Log() io.Writer                  { return &r.log }
