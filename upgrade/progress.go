package upgrade

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/term"
)

// Redraw and log intervals of the download progress.
const (
	barInterval = 100 * time.Millisecond
	logInterval = 5 * time.Second
	barWidth    = 30
)

// progress reports a download as it is written through it: a one-line bar
// redrawn with \r on a terminal, else a log line every logInterval (a log file
// or a container's output must not fill with carriage returns).
type progress struct {
	w     io.Writer
	tty   bool
	log   *logrus.Entry
	name  string
	total int64 // -1: unknown
	done  int64
	start time.Time
	last  time.Time
}

// newProgress returns nil when w is nil: no progress at all.
func newProgress(w io.Writer, log *logrus.Entry, name string, total int64) *progress {
	if w == nil {
		return nil
	}
	now := time.Now()
	p := &progress{w: w, log: log, name: name, total: total, start: now, last: now}
	if fd, ok := w.(interface{ Fd() uintptr }); ok {
		p.tty = term.IsTerminal(int(fd.Fd()))
	}
	return p
}

func (p *progress) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	now := time.Now()
	switch {
	case p.tty && now.Sub(p.last) >= barInterval:
		p.last = now
		p.draw(now)
	case !p.tty && now.Sub(p.last) >= logInterval:
		p.last = now
		p.log.WithFields(logrus.Fields{
			"release": p.name, "bytes": p.done, "total": p.total, "rate": rate(p.done, now.Sub(p.start)),
		}).Info("downloading")
	}
	return len(b), nil
}

// finish draws the final state of the bar and ends its line.
func (p *progress) finish() {
	if p == nil || !p.tty {
		return
	}
	p.draw(time.Now())
	fmt.Fprintln(p.w)
}

func (p *progress) draw(now time.Time) {
	var bar string
	if p.total > 0 {
		filled := int(min(p.done, p.total) * barWidth / p.total)
		bar = fmt.Sprintf("[%s%s] %s / %s", strings.Repeat("=", filled), strings.Repeat(" ", barWidth-filled), mb(p.done), mb(p.total))
	} else {
		bar = mb(p.done)
	}
	fmt.Fprintf(p.w, "\rlavap %s %s  %s   ", p.name, bar, rate(p.done, now.Sub(p.start)))
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

func rate(n int64, d time.Duration) string {
	if d <= 0 {
		return "- MB/s"
	}
	return fmt.Sprintf("%.1f MB/s", float64(n)/1e6/d.Seconds())
}
