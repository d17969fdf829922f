package nbdtest

import (
	"os"
	"os/exec"
	"testing"
)

// NeedTool skips the test when an outside tool is missing, except under
// CI=true where a missing tool is a failure.
func NeedTool(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("required tool %s is missing: %v", name, err)
			}
			t.Skipf("tool %s not installed", name)
		}
	}
}

// Run runs a command and fails the test if it fails; it returns its
// combined output.
func Run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
	return out
}
