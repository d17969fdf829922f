package main

import (
	"strings"
	"testing"
	"time"
)

func TestProgressLineFits(t *testing.T) {
	for _, width := range []int{20, 40, 59, 79, 119, 200} {
		for _, done := range []int64{0, 5 << 20, 347 << 20, 1 << 40} {
			line := progressLine("backup", done, 347<<20, 3*time.Second, width)
			if len(line) > width {
				t.Errorf("width %d: %q is %d columns", width, line, len(line))
			}
			if !strings.HasPrefix(line, "backup") {
				t.Errorf("width %d: %q lost the verb", width, line)
			}
		}
	}
	if l := progressLine("backup", 100<<20, 347<<20, 3*time.Second, 79); !strings.Contains(l, "[") || !strings.Contains(l, "ETA") {
		t.Errorf("80 columns leave room for the bar and the ETA: %q", l)
	}
}
