package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progressBar draws "verb [===   ] done / total pct rate ETA" on one
// terminal line, at most ten times a second, fitted to the terminal's
// width so a redraw never wraps. It is silent when not on a terminal, so
// scripts see no control characters. Safe for concurrent use.
type progressBar struct {
	w     io.Writer
	verb  string
	width int // terminal columns
	start time.Time
	mu    sync.Mutex
	last  time.Time
	drawn int // length of the line drawn last
}

// newProgress returns a bar on stderr, or nil (which ignores updates)
// when stderr is no terminal, the user asked for none, or quiet is set.
func (e *cmdEnv) newProgress(verb string, quiet bool) *progressBar {
	if !e.terminal || quiet || e.quiet || e.noProgress {
		return nil
	}
	width := e.width
	if width <= 0 {
		width = 80
	}
	return &progressBar{w: e.stderr, verb: verb, width: width, start: time.Now()}
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
	line := progressLine(p.verb, done, total, now.Sub(p.start), p.width-1)
	pad := max(0, p.drawn-len(line))
	fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", pad))
	p.drawn = len(line)
}

// progressLine renders one state of the bar in at most width columns,
// dropping the least useful parts first: the bar itself, then the rate,
// then the ETA.
func progressLine(verb string, done, total int64, elapsed time.Duration, width int) string {
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(done) / s
	}
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
	}
	eta := "--"
	if rate > 0 && total >= done {
		eta = shortDuration(time.Duration(float64(total-done) / rate * float64(time.Second)))
	}
	amount := fmt.Sprintf("%s / %s %3.0f%%", bytesIEC(done), bytesIEC(total), pct)
	speed := fmt.Sprintf("%s/s", bytesIEC(int64(rate)))
	parts := [][]string{
		{verb, "", amount, speed, "ETA " + eta},
		{verb, amount, speed, "ETA " + eta},
		{verb, amount, "ETA " + eta},
		{verb, amount},
	}
	for i, ps := range parts {
		line := strings.Join(ps, "  ")
		if i == 0 {
			// The bar takes what the text leaves, up to 30 columns.
			room := min(30, width-len(line)-2)
			if room < 10 {
				continue
			}
			fill := max(0, min(room, int(pct/100*float64(room))))
			ps[1] = "[" + strings.Repeat("=", fill) + strings.Repeat(" ", room-fill) + "]"
			line = strings.Join(ps, "  ")
		}
		if len(line) <= width || i == len(parts)-1 {
			if len(line) > width {
				line = line[:max(0, width)]
			}
			return line
		}
	}
	return ""
}

// done clears the bar's line.
func (p *progressBar) done() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn > 0 {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.drawn))
	}
}

// above prints with print on a line of its own: the bar's line is
// cleared first and drawn again at the next update. A nil bar just
// prints.
func (p *progressBar) above(print func()) {
	if p == nil {
		print()
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn > 0 {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.drawn))
		p.drawn, p.last = 0, time.Time{}
	}
	print()
}
