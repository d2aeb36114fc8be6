package supervisor

import (
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// ownQueueBytes bounds LavaVisor's own log lines waiting for a blocked output.
const ownQueueBytes = 1 << 20

// ownLog is the writer of LavaVisor's own log entries. A log call must never
// freeze the supervisor: with a terminal paused by Ctrl-S, a Ctrl-C must still
// stop the services. Each entry is queued for a writer goroutine; the call
// waits for it to be written, as a plain writer would, until a Write has been
// stuck for BlockedAfter, and not at all while the output is known to be
// blocked; a slow output, or a writer starved of CPU, is waited for. Entries
// that do not fit the bounded queue are dropped, counted, and reported once
// the output moves again.
type ownLog struct {
	sink         *Sink
	blockedAfter time.Duration

	mu      sync.Mutex
	queue   []ownEntry
	queued  int
	dropped int
	kick    chan struct{}
	idle    *sync.Cond // signalled when the queue empties
}

type ownEntry struct {
	b    []byte
	done chan struct{}
}

func newOwnLog(s *Sink, blockedAfter time.Duration) *ownLog {
	l := &ownLog{sink: s, blockedAfter: blockedAfter, kick: make(chan struct{}, 1)}
	l.idle = sync.NewCond(&l.mu)
	go l.run()
	return l
}

func (l *ownLog) Write(p []byte) (int, error) {
	e := ownEntry{b: append([]byte(nil), p...), done: make(chan struct{})}
	l.mu.Lock()
	if l.queued+len(p) > ownQueueBytes {
		l.dropped++
		l.mu.Unlock()
		return len(p), nil
	}
	l.queue = append(l.queue, e)
	l.queued += len(p)
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	l.sink.waitMoving(e.done, l.blockedAfter, time.Time{})
	return len(p), nil
}

func (l *ownLog) run() {
	for range l.kick {
		for {
			l.mu.Lock()
			batch := l.queue
			l.queue = nil
			l.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			for _, e := range batch {
				l.sink.Write(e.b)
				close(e.done)
			}
			l.mu.Lock()
			for _, e := range batch {
				l.queued -= len(e.b)
			}
			dropped := l.dropped
			l.dropped = 0
			if len(l.queue) == 0 {
				l.idle.Broadcast()
			}
			l.mu.Unlock()
			if dropped > 0 {
				l.noteDropped(dropped)
			}
		}
	}
}

// noteDropped logs, in the logger's format, how many entries were lost.
func (l *ownLog) noteDropped(n int) {
	e := logrus.NewEntry(l.sink.log).WithField("dropped", n)
	e.Time, e.Level = time.Now(), logrus.WarnLevel
	e.Message = fmt.Sprintf("dropped %d LavaVisor log lines (output blocked)", n)
	if b, err := l.sink.log.Formatter.Format(e); err == nil {
		l.sink.Write(b)
	}
}

// flush waits until every queued entry is written, as long as the output
// moves: it gives up once a Write has been stuck for timeout since the call.
func (l *ownLog) flush(timeout time.Duration) {
	done := make(chan struct{})
	go func() {
		l.mu.Lock()
		for len(l.queue) > 0 || l.queued > 0 {
			l.idle.Wait()
		}
		l.mu.Unlock()
		close(done)
	}()
	l.sink.waitMoving(done, timeout, time.Now())
}
