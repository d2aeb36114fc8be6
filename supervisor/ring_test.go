package supervisor

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// numbered returns lines first..first+n-1 of 100 bytes each, newline included.
func numbered(first, n int) []byte {
	var b []byte
	for i := first; i < first+n; i++ {
		b = fmt.Appendf(b, "line %08d %s\n", i, strings.Repeat("x", 85))
	}
	return b
}

// checkNumbered checks that lines are numbered lines, in order, with no gap.
func checkNumbered(t *testing.T, lines []LogLine) {
	t.Helper()
	for i, l := range lines {
		if want := fmt.Sprintf("line %08d %s", l.Seq, strings.Repeat("x", 85)); l.Text != want {
			t.Fatalf("line %d (Seq %d) = %.40q, want %.40q", i, l.Seq, l.Text, want)
		}
		if i > 0 && l.Seq != lines[i-1].Seq+1 {
			t.Fatalf("Seq %d after %d", l.Seq, lines[i-1].Seq)
		}
	}
}

// fill writes n numbered lines after the ring's newest, in reads of 37 lines,
// a new second every 1000 lines, as a chatty service's Pump would.
func fill(r *LogRing, n int) {
	at := time.Unix(1_700_000_000, 0)
	for done := 0; done < n; {
		k := min(37, n-done)
		r.addLines("stderr", numbered(int(r.Cursor())+1, k), at.Add(time.Duration(done/1000)*time.Second))
		done += k
	}
}

func textBytes(lines []LogLine) int {
	n := 0
	for _, l := range lines {
		n += len(l.Text) + 1
	}
	return n
}

func TestLogRingKeepsAtLeastLogRingBytes(t *testing.T) {
	r := newLogRing()
	total := 3 * LogRingBytes / 100
	fill(r, total)
	all := r.Last(total)
	checkNumbered(t, all)
	if n := textBytes(all); n < LogRingBytes || n > LogRingBytes+2*ringBlockSize {
		t.Errorf("ring keeps %d bytes of lines, want %d to %d", n, LogRingBytes, LogRingBytes+2*ringBlockSize)
	}
	if all[0].Seq == 1 {
		t.Error("the oldest lines were not dropped")
	}
	if last := all[len(all)-1].Seq; last != uint64(total) {
		t.Errorf("newest line kept is %d, want %d", last, total)
	}
	// A full ring reuses its memory: one block at most in flight.
	if len(r.blocks) > LogRingBytes/ringBlockSize+2 {
		t.Errorf("%d blocks for %d bytes", len(r.blocks), textBytes(all))
	}
}

func TestLogRingLongLinesAndTinyReads(t *testing.T) {
	r := newLogRing()
	// Lines longer than a block, then a service that prints one empty line a
	// second: the ring stays bounded either way.
	long := strings.Repeat("L", 3*ringBlockSize)
	for range 3 {
		r.addLines("stdout", []byte(long+"\n"), time.Now())
	}
	if got := r.Last(3); len(got) != 3 || got[0].Text != long || got[2].Seq != 3 {
		t.Fatalf("long lines: %d lines kept", len(got))
	}
	at := time.Unix(1_700_000_000, 0)
	for i := range 2 * ringMaxRecords {
		r.addLines("stdout", []byte("\n"), at.Add(time.Duration(i)*time.Second))
	}
	if r.recs > ringMaxRecords+ringBlockRecords {
		t.Errorf("%d records kept, want about %d", r.recs, ringMaxRecords)
	}
	if got := r.Last(1); len(got) != 1 || got[0].Seq != 3+2*ringMaxRecords || got[0].Text != "" {
		t.Errorf("Last(1) = %+v", got)
	}
}

func TestLogRingLastAndSince(t *testing.T) {
	r := newLogRing()
	if got := r.Last(5); len(got) != 0 {
		t.Errorf("Last of an empty ring = %v", got)
	}
	if lines, next, skipped := r.Since(0, 10); len(lines) != 0 || next != 0 || skipped != 0 {
		t.Errorf("Since(0) of an empty ring = %v, %d, %d", lines, next, skipped)
	}
	fill(r, 10)
	seqs := func(lines []LogLine) []uint64 {
		var s []uint64
		for _, l := range lines {
			s = append(s, l.Seq)
		}
		return s
	}
	if got := seqs(r.Last(3)); fmt.Sprint(got) != "[8 9 10]" {
		t.Errorf("Last(3) = %v", got)
	}
	if got := r.Last(100); len(got) != 10 {
		t.Errorf("Last(100) = %v", seqs(got))
	} else {
		checkNumbered(t, got)
	}
	if got := r.Last(0); len(got) != 0 {
		t.Errorf("Last(0) = %v", seqs(got))
	}
	lines, next, skipped := r.Since(0, 4)
	if fmt.Sprint(seqs(lines)) != "[1 2 3 4]" || next != 4 || skipped != 0 {
		t.Errorf("Since(0, 4) = %v, %d, %d", seqs(lines), next, skipped)
	}
	lines, next, skipped = r.Since(next, 0)
	if fmt.Sprint(seqs(lines)) != "[5 6 7 8 9 10]" || next != 10 || skipped != 0 {
		t.Errorf("Since(4, 0) = %v, %d, %d", seqs(lines), next, skipped)
	}
	lines, next, skipped = r.Since(next, 5)
	if len(lines) != 0 || next != 10 || skipped != 0 {
		t.Errorf("Since(10, 5) = %v, %d, %d", seqs(lines), next, skipped)
	}
	if c := r.Cursor(); c != 10 {
		t.Errorf("Cursor() = %d", c)
	}
	fill(r, 1)
	if lines, next, _ = r.Since(next, 5); fmt.Sprint(seqs(lines)) != "[11]" || next != 11 {
		t.Errorf("Since(10, 5) after one more line = %v, %d", seqs(lines), next)
	}
}

// TestLogRingLineTimesAndStreams: lines of one second share the time of the
// first, as the log's JSON time does; each line keeps its own stream.
func TestLogRingLineTimesAndStreams(t *testing.T) {
	r := newLogRing()
	t0 := time.Unix(1_700_000_000, 0)
	r.addLines("stderr", []byte("a\nb\n"), t0)
	r.addLines("stderr", []byte("c\n"), t0.Add(100*time.Millisecond))
	r.addLines("stderr", []byte("d\n"), t0.Add(time.Second))
	r.addLines("stdout", []byte("e\n"), t0.Add(1100*time.Millisecond))
	r.addPiece("stdout", []byte("f"), false, t0.Add(1200*time.Millisecond))
	var got []string
	for _, l := range r.Last(10) {
		got = append(got, fmt.Sprintf("%s %s %v", l.Text, l.Stream, l.At.Sub(t0)))
	}
	want := "[a stderr 0s b stderr 0s c stderr 0s d stderr 1s e stdout 1.1s f stdout 1.2s]"
	if fmt.Sprint(got) != want {
		t.Errorf("lines = %v, want %v", got, want)
	}
}

func TestLogRingCountsWhatASlowFollowerSkipped(t *testing.T) {
	r := newLogRing()
	fill(r, 5)
	_, cursor, _ := r.Since(0, 3)
	total := 3 * LogRingBytes / 100
	fill(r, total-5)
	lines, next, skipped := r.Since(cursor, 10)
	if skipped == 0 || len(lines) != 10 || lines[0].Seq != cursor+skipped+1 || next != lines[9].Seq {
		t.Fatalf("Since(%d, 10) = %d lines from %d, next %d, %d skipped", cursor, len(lines), lines[0].Seq, next, skipped)
	}
	checkNumbered(t, lines)
	rest, next, more := r.Since(next, 0)
	if more != 0 || next != uint64(total) {
		t.Errorf("Since the rest: next %d, %d more skipped, want next %d", next, more, total)
	}
	if read := uint64(len(lines) + len(rest)); read+skipped != uint64(total)-cursor {
		t.Errorf("read %d + skipped %d lines after cursor %d, want %d", read, skipped, cursor, uint64(total)-cursor)
	}
	if kept := textBytes(r.Last(total)); uint64(kept) != 100*(uint64(total)-cursor-skipped) {
		t.Errorf("skipped %d, but the ring keeps %d bytes of %d lines", skipped, kept, total)
	}
}

func TestLogRingWaitWakesOnNewLine(t *testing.T) {
	r := newLogRing()
	isClosed := func(c <-chan struct{}) bool {
		select {
		case <-c:
			return true
		default:
			return false
		}
	}
	w := r.Wait(0)
	if isClosed(w) {
		t.Fatal("Wait(0) of an empty ring is closed")
	}
	woke := make(chan struct{})
	go func() {
		<-w
		close(woke)
	}()
	fill(r, 1)
	<-woke
	if !isClosed(r.Wait(0)) {
		t.Error("Wait(0) with a line there is not closed")
	}
	w = r.Wait(r.Cursor())
	if isClosed(w) {
		t.Error("Wait(newest) is closed before any new line")
	}
	r.addPiece("stdout", []byte("tail"), false, time.Now())
	if !isClosed(w) {
		t.Error("Wait(newest) is not closed after a piece")
	}
}

// TestLogRingFollowerRace follows a writer live: each line is read once, in
// order, or counted as skipped.
func TestLogRingFollowerRace(t *testing.T) {
	r := newLogRing()
	total := 2 * LogRingBytes / 100
	go fill(r, total)
	var cursor, read, skipped uint64
	for cursor < uint64(total) {
		<-r.Wait(cursor)
		lines, next, s := r.Since(cursor, 500)
		if len(lines) == 0 {
			t.Fatalf("Wait(%d) woke with no line after it", cursor)
		}
		checkNumbered(t, lines)
		if next != lines[len(lines)-1].Seq {
			t.Fatalf("next %d after line %d", next, lines[len(lines)-1].Seq)
		}
		if lines[0].Seq != cursor+s+1 {
			t.Fatalf("after %d with %d skipped came %d", cursor, s, lines[0].Seq)
		}
		cursor, read, skipped = next, read+uint64(len(lines)), skipped+s
	}
	if read+skipped != uint64(total) {
		t.Errorf("read %d + skipped %d, want %d", read, skipped, total)
	}
}

// TestLogsAsLogged pumps lines through an Output: the ring has them as the log
// has them, pieces of long lines included, and what the log had to repair
// (invalid UTF-8) as the service wrote it.
func TestLogsAsLogged(t *testing.T) {
	var out bytes.Buffer
	log := logrus.New()
	log.SetFormatter(NewJSONFormatter())
	s := NewSink(&out, log)
	o := s.NewOutput("provider-eth", OutputOptions{FlushTimeout: time.Minute, MaxLine: 8})
	pumpBytes(t, o, "stderr", []byte("short\r\n0123456789abcdefghij\nbad \xff\r\ntail\r"))
	pumpBytes(t, o, "stdout", []byte("out\n"))
	o.Close()
	type line struct {
		stream, text string
		continued    bool
	}
	var got []line
	var logged []piece
	for _, l := range s.Logs("provider-eth").Last(100) {
		got = append(got, line{l.Stream, l.Text, l.Continued})
		logged = append(logged, piece{strings.ToValidUTF8(l.Text, "\uFFFD"), l.Continued})
	}
	want := []line{
		{"stderr", "short", false},
		{"stderr", "01234567", false}, {"stderr", "89abcdef", true}, {"stderr", "ghij", true},
		{"stderr", "bad \xff", false},
		{"stderr", "tail\r", false},
		{"stdout", "out", false},
	}
	if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
		t.Errorf("ring has\n%#v\nwant\n%#v", got, want)
	}
	if w := jsonPieces(t, out.Bytes()); fmt.Sprintf("%#v", logged) != fmt.Sprintf("%#v", w) {
		t.Errorf("ring has\n%#v\nthe log has\n%#v", logged, w)
	}
}

// TestLogsSurviveRestartsAndReloads: each start of a service, and a reload
// that replaces it (a new Output), adds to one ring, numbered on.
func TestLogsSurviveRestartsAndReloads(t *testing.T) {
	s := NewSink(io.Discard, logrus.New())
	o := s.NewOutput("provider-eth", OutputOptions{FlushTimeout: time.Minute})
	pumpBytes(t, o, "stderr", []byte("first start\n"))
	pumpBytes(t, o, "stderr", []byte("restarted\nthen killed"))
	o.Close()
	o = s.NewOutput("provider-eth", OutputOptions{FlushTimeout: time.Minute})
	pumpBytes(t, o, "stdout", []byte("after the reload\n"))
	o.Close()
	s.NewOutput("sidecar", OutputOptions{FlushTimeout: time.Minute}).Close()
	var got []string
	for _, l := range s.Logs("provider-eth").Last(10) {
		got = append(got, fmt.Sprintf("%d %s", l.Seq, l.Text))
	}
	if want := "[1 first start 2 restarted 3 then killed 4 after the reload]"; fmt.Sprint(got) != want {
		t.Errorf("provider-eth's ring = %q, want %q", got, want)
	}
	if a, b := s.Logs("provider-eth"), s.Logs("provider-eth"); a != b {
		t.Error("Logs makes a new ring each time")
	}
	if got := s.Logs("sidecar").Last(10); len(got) != 0 {
		t.Errorf("sidecar has the lines of another service: %v", got)
	}
}

// TestIdleFollowerDoesNotHoldUpService: a follower takes a cursor and a Wait
// channel and never reads (a terminal paused with Ctrl-S). The service still
// writes 8 MiB through its Output without a line lost to the log: had the
// ring waited for the follower, Pump would never return. The follower then
// learns how many lines it missed.
func TestIdleFollowerDoesNotHoldUpService(t *testing.T) {
	s := NewSink(io.Discard, logrus.New())
	// A busy machine descheduling the writer in a Write must not pass for a
	// blocked output.
	o := s.NewOutput("provider-eth", OutputOptions{FlushTimeout: time.Minute, BlockedAfter: time.Minute})
	ring := s.Logs("provider-eth")
	cursor := ring.Cursor()
	wait := ring.Wait(cursor)
	total := 8 << 20 / 100
	pumpBytes(t, o, "stderr", numbered(1, total))
	o.Close()
	if n := o.Dropped(); n != 0 {
		t.Errorf("%d lines dropped from the log", n)
	}
	select {
	case <-wait:
	default:
		t.Error("the follower's Wait channel is still open")
	}
	lines, next, skipped := ring.Since(cursor, 0)
	checkNumbered(t, lines)
	if skipped == 0 || skipped+uint64(len(lines)) != uint64(total) || next != uint64(total) {
		t.Errorf("the idle follower gets %d lines, %d skipped, next %d; want %d in all", len(lines), skipped, next, total)
	}
}
