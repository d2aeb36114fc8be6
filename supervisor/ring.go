package supervisor

import (
	"bytes"
	"sort"
	"strings"
	"sync"
	"time"
)

const (
	// LogRingBytes is the least line text (newlines counted) a service's log
	// ring keeps: older lines go only while the newer ones still make up this
	// much, so the ring holds at most about LogRingBytes plus one block.
	LogRingBytes = 1 << 20
	// ringBlockSize is the unit of a ring's memory: an idle service holds one
	// block, not a megabyte, and a full ring reuses its oldest block.
	ringBlockSize = 64 << 10
	// ringMaxRecords bounds the bookkeeping of a ring fed by many tiny reads
	// of different seconds (a service printing an empty line now and then):
	// past it the oldest block goes even with less than LogRingBytes of text.
	ringMaxRecords = 1 << 14
	// ringBlockRecords makes blocks of tiny lines small enough for
	// ringMaxRecords to be kept to within a block.
	ringBlockRecords = ringMaxRecords / 16
)

// LogLine is one line of a service, as it was logged.
type LogLine struct {
	// Seq numbers the lines of a service from 1, across its restarts and
	// reloads; a follower's cursor is the Seq of the last line it read.
	Seq    uint64
	Stream string // "stdout" or "stderr"
	// At is when the line was read (within the second, the time of the first
	// line read with it, as in the log).
	At time.Time
	// Text is the line as the service wrote it, without its line ending; it
	// may not be valid UTF-8.
	Text string
	// Continued marks a piece of a line longer than the longest line logged
	// whole, after its first piece (the log's "continued" field).
	Continued bool
}

// LogRing keeps the newest lines of one service, at least LogRingBytes of
// them, for operators to read and follow. The service's Pumps write to it and
// never wait for a reader: a reader takes the lock only to copy what it asked
// for, and a follower that falls behind finds its lines gone and is told how
// many, rather than holding them.
type LogRing struct {
	mu     sync.Mutex
	blocks []*ringBlock // oldest first; the last one is filled
	spare  *ringBlock   // the last block dropped, for the next one
	text   int          // line bytes in blocks
	recs   int          // records in blocks
	seq    uint64       // Seq of the newest line, 0 before the first
	// wake is closed at the next line; made by a Wait that found nothing new.
	wake   chan struct{}
	closed chan struct{} // already closed: Wait's answer when a line is there
}

// ringBlock holds whole lines, each ending in '\n', and records describing
// runs of them.
type ringBlock struct {
	data []byte
	recs []ringRecord
}

// ringRecord is a run of lines of one stream, in data[off:end] of its block:
// the lines of one read, or of several reads of the same second, as the
// output queue packs them. Lines are found when they are read, not when they
// are written: the writer only copies and counts.
type ringRecord struct {
	seq      uint64 // of the first line
	lines    uint64
	off, end int
	stream   string
	at       time.Time
	// piece: one piece of a line split for length, or a last line without
	// newline, with a '\n' of ours; a '\r' before it is content.
	piece     bool
	continued bool
}

// logRings holds each service's ring by name, so that a ring outlives the
// Outputs of the service's starts and reloads.
type logRings struct {
	mu    sync.Mutex
	rings map[string]*LogRing
}

// Logs returns the log ring of service, made on first use: the lines of
// every start of the service, a reload's included.
func (s *Sink) Logs(service string) *LogRing {
	s.logs.mu.Lock()
	defer s.logs.mu.Unlock()
	r, ok := s.logs.rings[service]
	if !ok {
		if s.logs.rings == nil {
			s.logs.rings = map[string]*LogRing{}
		}
		r = newLogRing()
		s.logs.rings[service] = r
	}
	return r
}

func newLogRing() *LogRing {
	r := &LogRing{closed: make(chan struct{})}
	close(r.closed)
	return r
}

// addLines adds whole lines (each ending in '\n') read from stream at at.
func (r *LogRing) addLines(stream string, lines []byte, at time.Time) {
	if len(lines) == 0 {
		return
	}
	r.mu.Lock()
	for len(lines) > 0 {
		b := r.blockFor(bytes.IndexByte(lines, '\n') + 1)
		k := min(len(lines), cap(b.data)-len(b.data))
		if k < len(lines) {
			k = bytes.LastIndexByte(lines[:k], '\n') + 1
		}
		r.appendLocked(b, stream, lines[:k], at, false, false)
		lines = lines[k:]
	}
	r.trimLocked()
	r.wakeLocked()
	r.mu.Unlock()
}

// addPiece adds one piece of a split line, or a last line without newline.
func (r *LogRing) addPiece(stream string, piece []byte, continued bool, at time.Time) {
	r.mu.Lock()
	b := r.blockFor(len(piece) + 1)
	r.appendLocked(b, stream, piece, at, true, continued)
	b.data = append(b.data, '\n')
	b.recs[len(b.recs)-1].end++
	r.text++
	r.trimLocked()
	r.wakeLocked()
	r.mu.Unlock()
}

// blockFor returns the block to append to, with room for n bytes.
func (r *LogRing) blockFor(n int) *ringBlock {
	if k := len(r.blocks); k > 0 {
		if b := r.blocks[k-1]; cap(b.data)-len(b.data) >= n && len(b.recs) < ringBlockRecords {
			return b
		}
	}
	// Drop what the new block replaces first, so that it reuses the memory.
	r.trimLocked()
	var b *ringBlock
	switch {
	case n > ringBlockSize:
		b = &ringBlock{data: make([]byte, 0, n)}
	case r.spare != nil:
		b, r.spare = r.spare, nil
	default:
		b = &ringBlock{data: make([]byte, 0, ringBlockSize)}
	}
	r.blocks = append(r.blocks, b)
	return b
}

// appendLocked copies data (whole lines, or a piece without its '\n') to b,
// extending b's last record when the output would log them as one run.
func (r *LogRing) appendLocked(b *ringBlock, stream string, data []byte, at time.Time, piece, continued bool) {
	n := uint64(1)
	if !piece {
		n = uint64(bytes.Count(data, []byte{'\n'}))
	}
	off := len(b.data)
	b.data = append(b.data, data...)
	r.text += len(data)
	if k := len(b.recs); k > 0 && !piece {
		if last := &b.recs[k-1]; !last.piece && last.stream == stream && last.end == off && last.at.Unix() == at.Unix() {
			last.end = len(b.data)
			last.lines += n
			r.seq += n
			return
		}
	}
	b.recs = append(b.recs, ringRecord{seq: r.seq + 1, lines: n, off: off, end: len(b.data), stream: stream, at: at, piece: piece, continued: continued})
	r.recs++
	r.seq += n
}

// trimLocked drops the oldest blocks while the others keep enough.
func (r *LogRing) trimLocked() {
	for len(r.blocks) > 1 {
		old := r.blocks[0]
		if r.text-len(old.data) < LogRingBytes && r.recs <= ringMaxRecords {
			return
		}
		r.text -= len(old.data)
		r.recs -= len(old.recs)
		r.blocks[0] = nil
		r.blocks = r.blocks[1:]
		if cap(old.data) == ringBlockSize {
			clear(old.recs) // their stream strings and times
			old.data, old.recs = old.data[:0], old.recs[:0]
			r.spare = old
		}
	}
}

func (r *LogRing) wakeLocked() {
	if r.wake != nil {
		close(r.wake)
		r.wake = nil
	}
}

// oldestLocked is the Seq of the oldest line kept, r.seq+1 if none is.
func (r *LogRing) oldestLocked() uint64 {
	if len(r.blocks) == 0 || len(r.blocks[0].recs) == 0 {
		return r.seq + 1
	}
	return r.blocks[0].recs[0].seq
}

// Cursor returns the Seq of the newest line: following from it gives only the
// lines to come.
func (r *LogRing) Cursor() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seq
}

// Last returns the last n lines kept, oldest first; the Seq of the last one
// is the cursor to follow from.
func (r *LogRing) Last(n int) []LogLine {
	if n <= 0 {
		return nil
	}
	r.mu.Lock()
	from := max(r.oldestLocked(), r.seq-min(r.seq, uint64(n))+1)
	raw, recs := r.copyLocked(from, n)
	r.mu.Unlock()
	return splitLines(raw, recs, from, n)
}

// Since returns the lines after cursor (the Seq of the last line read; 0
// before the first), oldest first, at most max of them (max <= 0: all there
// are). next is the cursor to pass next time: the Seq of the last line
// returned, or cursor if there is none yet. skipped counts the lines after
// cursor that the ring dropped before they were read: the follower fell
// behind by that many.
func (r *LogRing) Since(cursor uint64, max int) (lines []LogLine, next, skipped uint64) {
	r.mu.Lock()
	from := cursor + 1
	if from > r.seq {
		r.mu.Unlock()
		return nil, cursor, 0
	}
	if oldest := r.oldestLocked(); from < oldest {
		skipped = oldest - from
		from = oldest
	}
	if max <= 0 {
		max = int(r.seq - from + 1)
	}
	raw, recs := r.copyLocked(from, max)
	r.mu.Unlock()
	lines = splitLines(raw, recs, from, max)
	next = cursor + skipped
	if len(lines) > 0 {
		next = lines[len(lines)-1].Seq
	}
	return lines, next, skipped
}

// Wait returns a channel closed once a line after cursor is there (at once if
// one is): a follower selects on it beside its ctx.Done(). It costs the
// writer nothing but a close.
func (r *LogRing) Wait(cursor uint64) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seq > cursor {
		return r.closed
	}
	if r.wake == nil {
		r.wake = make(chan struct{})
	}
	return r.wake
}

// copyLocked copies the records holding lines from..from+n-1 (all kept), and
// their bytes: the lines are split after the lock is released, so that a
// reader holds the writer up for no more than a copy.
func (r *LogRing) copyLocked(from uint64, n int) ([]byte, []ringRecord) {
	want := from + uint64(n)
	bi := sort.Search(len(r.blocks), func(i int) bool {
		last := r.blocks[i].recs[len(r.blocks[i].recs)-1]
		return last.seq+last.lines > from
	})
	var recs []ringRecord
	var src [][]byte
	size := 0
blocks:
	for _, b := range r.blocks[bi:] {
		ri := sort.Search(len(b.recs), func(i int) bool { return b.recs[i].seq+b.recs[i].lines > from })
		for _, rec := range b.recs[ri:] {
			if rec.seq >= want {
				break blocks
			}
			recs = append(recs, rec)
			src = append(src, b.data[rec.off:rec.end])
			size += rec.end - rec.off
		}
	}
	raw := make([]byte, 0, size)
	for i, d := range src {
		recs[i].off = len(raw)
		raw = append(raw, d...)
		recs[i].end = len(raw)
	}
	return raw, recs
}

// splitLines cuts the copied records into lines from..from+n-1.
func splitLines(raw []byte, recs []ringRecord, from uint64, n int) []LogLine {
	if len(recs) == 0 {
		return nil
	}
	// One string for all the text: each line's Text is a slice of it.
	text := string(raw)
	var kept uint64
	for _, rec := range recs {
		kept += rec.lines
	}
	out := make([]LogLine, 0, min(uint64(n), kept))
	for _, rec := range recs {
		d := text[rec.off:rec.end]
		for seq := rec.seq; len(d) > 0 && len(out) < n; seq++ {
			j := strings.IndexByte(d, '\n')
			line := d[:j]
			d = d[j+1:]
			if seq < from {
				continue
			}
			if !rec.piece {
				line = strings.TrimSuffix(line, "\r")
			}
			out = append(out, LogLine{Seq: seq, Stream: rec.stream, At: rec.at, Text: line, Continued: rec.continued})
		}
	}
	return out
}
