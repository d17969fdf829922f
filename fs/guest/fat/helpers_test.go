package fat

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// needTool skips the test when an outside tool is missing, except under
// CI=true, where a missing tool must fail loudly.
func needTool(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("tool %s is required under CI: %v", n, err)
			}
			t.Skipf("tool %s not installed", n)
		}
	}
}

// tool runs a command in the UTC zone and a UTF-8 locale (mtools converts
// long names and times through them) and returns its standard output.
func tool(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "TZ=UTC", "LC_ALL=C.UTF-8", "MTOOLS_SKIP_CHECK=1")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\n%s%s", name, args, err, out.String(), errb.String())
	}
	return out.String()
}
