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

// holdSinkLock keeps the sink's lock for d without a Write in progress: the
// own log's writer is held back as on a machine too busy to run it, while the
// output itself is not stuck.
func holdSinkLock(s *Sink, d time.Duration) {
	s.mu.Lock()
	go func() {
		time.Sleep(d) // the slowness simulated, not a synchronisation
		s.mu.Unlock()
	}()
}

// A log call waits for its line however slow the writer, as long as no Write
// is stuck: it used to return after BlockedAfter, its line not yet written.
func TestOwnLogWaitsForSlowWriter(t *testing.T) {
	var buf syncBuffer
	log := logrus.New()
	log.SetFormatter(NewTextFormatter(false))
	s := NewSink(&buf, log)
	// BlockedAfter long enough that no Write to a buffer passes for stuck,
	// on a busy machine too; the writer is held back well beyond it.
	s.own = newOwnLog(s, 300*time.Millisecond)
	log.SetOutput(s.own)
	holdSinkLock(s, 1500*time.Millisecond)
	log.Info("slow but written")
	if !strings.Contains(buf.String(), "slow but written") {
		t.Error("log call returned before its line was written, with no Write stuck")
	}
}

// Flush at exit waits for a slow writer; it gives up only on a stuck Write.
func TestOwnLogFlushWaitsForSlowWriter(t *testing.T) {
	var buf syncBuffer
	log := logrus.New()
	log.SetFormatter(NewTextFormatter(false))
	s := NewSink(&buf, log)
	s.own = newOwnLog(s, time.Hour)
	log.SetOutput(s.own)
	s.mu.Lock()
	logged := make(chan struct{})
	go func() {
		log.Info("last words")
		close(logged)
	}()
	eventually(t, "line queued", func() bool {
		s.own.mu.Lock()
		defer s.own.mu.Unlock()
		return s.own.queued > 0
	})
	go func() {
		// Unlocked once Flush has waited well beyond its timeout.
		time.Sleep(1500 * time.Millisecond) // the slowness simulated, not a synchronisation
		s.mu.Unlock()
	}()
	s.Flush(300 * time.Millisecond)
	if !strings.Contains(buf.String(), "last words") {
		t.Error("Flush returned before the last line was written, with no Write stuck")
	}
	<-logged
}
