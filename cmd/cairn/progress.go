package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progressBar draws "verb  done / total  pct  rate  ETA" on one terminal
// line, at most ten times a second. It is silent when not on a terminal,
// so scripts see no control characters. Safe for concurrent use.
type progressBar struct {
	w     io.Writer
	verb  string
	start time.Time
	mu    sync.Mutex
	last  time.Time
	drawn bool
}

func (e *cmdEnv) newProgress(verb string, quiet bool) *progressBar {
	if !e.terminal || quiet {
		return nil
	}
	return &progressBar{w: e.stderr, verb: verb, start: time.Now()}
}

// update is a progress callback; a nil bar ignores it.
func (p *progressBar) update(done, total int64) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if now.Sub(p.last) < 100*time.Millisecond && done < total {
		return
	}
	p.last = now
	el := now.Sub(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(done) / el
	}
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
	}
	eta := "--"
	if rate > 0 && total >= done {
		eta = shortDuration(time.Duration(float64(total-done) / rate * float64(time.Second)))
	}
	const width = 24
	fill := int(pct / 100 * width)
	fill = max(0, min(width, fill))
	fmt.Fprintf(p.w, "\r%-8s [%s%s] %9s / %-9s %3.0f%%  %9s/s  ETA %-6s",
		p.verb, strings.Repeat("=", fill), strings.Repeat(" ", width-fill),
		bytesIEC(done), bytesIEC(total), pct, bytesIEC(int64(rate)), eta)
	p.drawn = true
}

// done clears the bar's line.
func (p *progressBar) done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", 100))
	}
}
