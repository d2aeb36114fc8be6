package supervisor

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// A paused terminal must not freeze LavaVisor's own logging (a Ctrl-C must
// still stop the services): log calls return, excess lines are dropped and
// counted, and everything queued arrives once the output moves.
func TestOwnLogNeverBlocks(t *testing.T) {
	g := &blockingWriter{release: make(chan struct{})}
	log := logrus.New()
	log.SetFormatter(NewTextFormatter(false))
	s := NewSink(g, log)
	s.own = newOwnLog(s, 20*time.Millisecond)
	log.SetOutput(s.own)

	returned := make(chan struct{})
	go func() {
		log.Info("first line")
		// 1 MiB of queue: some of these 3000 lines of 1 KiB are dropped.
		for i := 0; i < 3000; i++ {
			log.WithField("i", i).Info(strings.Repeat("x", 1000))
		}
		log.Info("stopping services")
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("log calls blocked on a blocked output")
	}
	close(g.release)
	s.Flush(5 * time.Second)
	eventually(t, "drop note", func() bool { return strings.Contains(g.String(), "LavaVisor log lines (output blocked)") })
	out := g.String()
	if !strings.Contains(out, "first line") {
		t.Error("the first line was lost")
	}
	if strings.Count(out, "\n") < 1000 {
		t.Errorf("only %d lines written", strings.Count(out, "\n"))
	}
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if !strings.HasPrefix(l, "lavavisor | ") {
			t.Fatalf("mangled line %q", l[:min(len(l), 80)])
		}
	}
}

// Normally a log call has returned only once its line is written.
func TestOwnLogWritesBeforeReturning(t *testing.T) {
	var buf syncBuffer
	log := logrus.New()
	log.SetFormatter(NewTextFormatter(false))
	NewSink(&buf, log)
	for i := 0; i < 100; i++ {
		log.WithField("i", i).Info("line")
		if !strings.Contains(buf.String(), "i="+strconv.Itoa(i)) {
			t.Fatalf("line %d not written when Info returned", i)
		}
	}
}
