package supervisor

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Defaults of OutputOptions.
const (
	DefaultMaxLine      = 1 << 20
	DefaultQueueBytes   = 4 << 20
	DefaultFlushTimeout = time.Second
	DefaultBlockedAfter = time.Second
)

const (
	// chunkSize is the unit of memory of the queue and of a Pump's read buffer:
	// a read buffer full of lines is queued as it is, small reads are packed.
	chunkSize = 256 << 10
	// readSize leaves room in a read buffer for the line carried over.
	readSize = chunkSize - 4<<10
	// minRead is the least room a read is given before a read buffer grows
	// for a line still waiting for its end.
	minRead = 4 << 10
	// batchSize is how many formatted bytes go out in one Write.
	batchSize     = 256 << 10
	lastLinesKept = 20
	// lastLineMax keeps an error message built from LastLines readable.
	lastLineMax = 4 << 10
	// dropReportEvery spaces the drop warnings of an output that is slow but moving.
	dropReportEvery = time.Second
)

// Sink is the one shared output of all logs: LavaVisor's own entries and every
// service's lines take the same lock, so that each formatted line reaches the
// writer in one Write and lines never interleave.
type Sink struct {
	log *logrus.Logger

	mu sync.Mutex
	w  io.Writer
	// chunks holds the queues' free chunks, shared by every service: a busy
	// service reuses its chunks without feeding the garbage collector, and an
	// idle one gives them back at the next collections.
	chunks sync.Pool
	// writing times the Write holding mu: the one place that sees a blocked
	// output, whoever is writing.
	writing writeTimer
	own     *ownLog
	logs    logRings // each service's LogRing, by name (ring.go)
	files   logFiles // each service's log file, when logs-dir is set (logfile.go)
	// discard: w is /dev/null (`2>/dev/null` beside logs-dir): service lines
	// are neither queued nor formatted for it, only kept in the ring and
	// written to the log files.
	discard bool
}

// isDevNull tells whether w is the null device.
func isDevNull(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && fi.Mode()&os.ModeCharDevice != 0 && unix.Major(st.Rdev) == 1 && unix.Minor(st.Rdev) == 3
}

// writeTimer tells how long the Write in progress has been going on.
type writeTimer struct {
	since atomic.Int64 // when the Write began (UnixNano), 0 between Writes
}

func (w *writeTimer) begin() { w.since.Store(time.Now().UnixNano()) }
func (w *writeTimer) end()   { w.since.Store(0) }

// untilBlocked returns how long from now the writer may still take before it
// counts as blocked for d: d while no Write is in progress (a writer starved of
// CPU is slow, not blocked), what is left of d for the Write in progress, and
// <= 0 once that Write has been stuck for d since it began, or since from if
// later. Only a stuck Write is a blocked output: a slow one that moves loses
// no line (SPEC §5).
func (w *writeTimer) untilBlocked(d time.Duration, from time.Time) time.Duration {
	since := w.since.Load()
	if since == 0 {
		return d
	}
	return d - time.Since(later(time.Unix(0, since), from))
}

// NewSink makes log write to w through the sink's lock. Service lines are
// formatted with log's Formatter (as read by NewOutput) and respect its level as
// Info entries; hooks are not fired for them.
func NewSink(w io.Writer, log *logrus.Logger) *Sink {
	s := &Sink{log: log, w: w, discard: isDevNull(w)}
	s.own = newOwnLog(s, DefaultBlockedAfter)
	log.SetOutput(s.own)
	return s
}

// Flush waits, at most timeout, until LavaVisor's own queued log lines are
// written: call it before the process exits.
func (s *Sink) Flush(timeout time.Duration) { s.own.flush(timeout) }

// untilBlocked is the sink's writeTimer.untilBlocked.
func (s *Sink) untilBlocked(d time.Duration, from time.Time) time.Duration {
	return s.writing.untilBlocked(d, from)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// waitMoving waits until done is closed, or until a Write has been stuck for d
// since it began, or since from if later; it returns false in the second case.
func (s *Sink) waitMoving(done <-chan struct{}, d time.Duration, from time.Time) bool {
	wait := s.untilBlocked(d, from)
	if wait <= 0 {
		return false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-done:
			return true
		case <-t.C:
		}
		if wait = s.untilBlocked(d, from); wait <= 0 {
			return false
		}
		t.Reset(wait)
	}
}

// Write writes p in one call to the underlying writer, under the sink's lock.
func (s *Sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writing.begin()
	defer s.writing.end()
	return s.w.Write(p)
}

// OutputOptions tunes an Output; zero values take the defaults.
type OutputOptions struct {
	// MaxLine is the longest line (newline and CR not counted) logged whole;
	// longer lines are split into pieces of MaxLine bytes.
	MaxLine int
	// QueueBytes bounds the line bytes waiting for the output. When it is full,
	// Pump waits for room while the output moves, so a child faster than its
	// output is slowed down rather than cut; lines are dropped (and counted)
	// only once a Write has been stuck for BlockedAfter.
	QueueBytes int
	// BlockedAfter is how long one Write to the sink (anyone's) may take before
	// the output counts as blocked. A disk under writeback pressure
	// stalls writes for tens of milliseconds; a paused terminal for ever.
	BlockedAfter time.Duration
	// FlushTimeout is how long, from Close's call, a Write may be stuck before
	// Close gives up on the queue: Close waits for a slow output that moves,
	// however long it takes to write the queue out.
	FlushTimeout time.Duration
}

// chunk is a run of lines of one stream, queued for the writer.
type chunk struct {
	data []byte // whole lines, each ending in '\n'
	// mem is the chunkSize buffer data lies in when it comes from (and goes
	// back to) Sink.chunks; nil for pieces and lines longer than a chunk.
	mem    []byte
	stream string
	at     time.Time // when the lines were read
	// piece marks data as one piece of a line plus a '\n' of our own: a '\r'
	// before it is content, not a CRLF ending.
	piece     bool
	continued bool
	// invalid tells that data may not be valid UTF-8; it is checked as it is
	// read, while in the CPU's cache, not once it has waited in the queue.
	invalid bool
}

// Output is one service's log pump; it lives for the whole life of the service
// (across restarts). Lines go from Pump to a bounded queue, and from there to the
// sink in a goroutine of its own: a slow output slows the child down, a blocked
// one holds it back for BlockedAfter once, then costs lines, not progress.
type Output struct {
	sink      *Sink
	service   string
	opts      OutputOptions
	formatter logrus.Formatter
	warn      *logrus.Entry

	kick      chan struct{} // a send wakes the writer; capacity 1, never blocks
	done      chan struct{} // closed when the writer has returned
	closeOnce sync.Once
	abandoned atomic.Bool // Close gave up on a blocked output
	dropped   atomic.Uint64

	mu              sync.Mutex
	queue           []*chunk
	queued          int // line bytes queued or being written
	closing         bool
	unreported      uint64
	firstUnreported time.Time
	room            room
	last            lineRing
	ring            *LogRing  // fed before the queue: it keeps what the output drops
	file            *fileSlot // fed before the queue too, when logs-dir is set
}

// Reserve widens the name column for services that will start later, so
// that it does not widen while LavaVisor's first lines are written.
func (s *Sink) Reserve(services ...string) {
	if r, ok := s.log.Formatter.(interface{ register(string) }); ok {
		for _, name := range services {
			r.register(name)
		}
	}
}

// NewOutput starts the writer of one service's lines. Set the logger's
// Formatter before: its fast path is chosen here.
func (s *Sink) NewOutput(service string, opts OutputOptions) *Output {
	if opts.MaxLine <= 0 {
		opts.MaxLine = DefaultMaxLine
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = DefaultQueueBytes
	}
	if opts.FlushTimeout <= 0 {
		opts.FlushTimeout = DefaultFlushTimeout
	}
	if opts.BlockedAfter <= 0 {
		opts.BlockedAfter = DefaultBlockedAfter
	}
	f := s.log.Formatter
	if r, ok := f.(interface{ register(string) }); ok {
		r.register(service)
	}
	o := &Output{
		sink:      s,
		service:   service,
		opts:      opts,
		formatter: f,
		warn:      s.log.WithField(FieldService, service),
		ring:      s.Logs(service),
		file:      s.fileSlot(service),
		kick:      make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	go o.run()
	return o
}

// Dropped is the number of lines lost so far to a blocked or failing output.
func (o *Output) Dropped() uint64 {
	return o.dropped.Load()
}

// FileDropped is the number of lines of the service lost so far to a blocked
// or failing log file (logs-dir).
func (o *Output) FileDropped() uint64 {
	return o.file.dropped.Load()
}

// LastLines returns up to the last n lines read (at most 20, each cut to 4 KiB),
// oldest first, dropped ones included: what the service said before it died.
func (o *Output) LastLines(n int) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last.lastN(n)
}

// Pump reads r to its end and queues its lines; it returns nil at EOF and when r
// is closed under it (os.ErrClosed), so that the owner of a pipe may close it to
// stop a Pump held up by a grandchild. The owner may also end it with a read
// deadline, the grace of such a grandchild: once it has passed, what the pipe
// already holds is still read, then Pump returns nil. Call it in a goroutine of
// its own, once per pipe per child start; stdout and stderr may be pumped at the
// same time.
func (o *Output) Pump(stream string, r io.Reader) error {
	p := pump{o: o, stream: stream, max: o.opts.MaxLine, read: min(readSize, o.opts.MaxLine)}
	p.own = o.sink.newChunk()
	p.buf = p.own.mem
	defer func() { o.sink.freeChunk(p.own) }()
	// drain is what is left to read of what the pipe held when its deadline
	// passed; -1 before.
	drain := -1
	for {
		if len(p.buf)-p.n < min(p.read, minRead) {
			p.grow()
		}
		want := min(p.read, len(p.buf)-p.n)
		if drain > 0 {
			want = min(want, drain)
		}
		n, err := r.Read(p.buf[p.n : p.n+want])
		if n > 0 {
			p.consume(n, time.Now())
		}
		if drain > 0 {
			if drain -= n; drain == 0 && err == nil {
				err = os.ErrDeadlineExceeded
			}
		}
		if err == nil {
			continue
		}
		if drain < 0 && errors.Is(err, os.ErrDeadlineExceeded) {
			// The grace bounds the wait for a grandchild's lines, not the
			// reading of lines written before it ended: a Pump held back by
			// a slow output, or starved of CPU, reaches the deadline with
			// the child's last lines (its panic) still in the pipe. Only
			// those are read, so a chatty grandchild cannot hold it.
			if k := pendingBytes(r); k > 0 {
				drain = k
				r.(deadlineReader).SetReadDeadline(time.Time{})
				continue
			}
		}
		if p.n > 0 {
			// The last line had no newline: it is still a line.
			p.emitLong(p.buf[:p.n], time.Now())
			p.n = 0
		}
		o.mu.Lock()
		closing := o.closing
		o.mu.Unlock()
		switch {
		case closing:
			return fmt.Errorf("pump %s of %s: output closed, lines dropped", stream, o.service)
		case errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded):
			return nil
		default:
			return fmt.Errorf("read %s of %s: %w", stream, o.service, err)
		}
	}
}

// deadlineReader is a pipe whose owner may end a Pump with a read deadline.
type deadlineReader interface {
	SetReadDeadline(time.Time) error
	SyscallConn() (syscall.RawConn, error)
}

// pendingBytes returns how many bytes r holds unread (FIONREAD, TIOCINQ on
// Linux), 0 if r is not a pipe or cannot tell.
func pendingBytes(r io.Reader) int {
	d, ok := r.(deadlineReader)
	if !ok {
		return 0
	}
	rc, err := d.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	rc.Control(func(fd uintptr) {
		if k, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ); err == nil {
			n = k
		}
	})
	return n
}

// pump is the state of one Pump: buf[:n] is a line still waiting for its end.
type pump struct {
	o      *Output
	stream string
	max    int
	// read bounds each read to at most max bytes, so any line that starts and
	// ends within one read is short enough: only the line carried over from the
	// reads before needs its length checked.
	read int
	buf  []byte
	// own holds buf while it is a chunk's memory; nil while a long line has
	// grown buf beyond it.
	own  *chunk
	n    int
	cont bool // the waiting line continues one already split
}

func (p *pump) grow() {
	nb := make([]byte, max(2*len(p.buf), p.n+p.read))
	copy(nb, p.buf[:p.n])
	p.buf = nb
	p.o.sink.freeChunk(p.own)
	p.own = nil
}

// consume handles n bytes just read after the waiting line.
func (p *pump) consume(n int, at time.Time) {
	fresh := p.buf[p.n : p.n+n]
	i := bytes.IndexByte(fresh, '\n')
	if i < 0 {
		p.n += n
		// One byte of slack: a line of exactly max bytes may be waiting for "\r\n".
		for p.n > p.max+1 {
			p.o.enqueuePiece(p.stream, p.buf[:p.max], p.cont, at)
			p.cont = true
			p.n = copy(p.buf, p.buf[p.max:p.n])
		}
		return
	}
	start := 0
	if first := trimCR(p.buf[:p.n+i]); p.cont || len(first) > p.max {
		p.emitLong(first, at)
		start = p.n + i + 1
	}
	end := p.n + bytes.LastIndexByte(fresh, '\n') + 1
	if end-start >= chunkSize/2 && p.own != nil {
		// Mostly lines: the buffer itself is queued, and only the start of
		// the next line is copied, to a new buffer. A buffer is never queued
		// less than half full, so the queue's memory stays within twice its
		// bound.
		c := p.own
		p.own = p.o.sink.newChunk()
		p.buf = p.own.mem
		p.n = copy(p.buf, c.mem[end:p.n+n])
		c.data = c.mem[start:end]
		c.invalid = !validUTF8(c.data)
		p.o.enqueueChunk(p.stream, c, at)
		return
	}
	if start < end {
		p.o.enqueueLines(p.stream, p.buf[start:end], at)
	}
	p.n = copy(p.buf, p.buf[end:p.n+n])
	if p.own == nil && p.n <= chunkSize/2 {
		// The long line is over: give its memory back.
		p.own = p.o.sink.newChunk()
		p.n = copy(p.own.mem, p.buf[:p.n])
		p.buf = p.own.mem
	}
}

// emitLong queues line (without its newline) in pieces of at most max bytes.
func (p *pump) emitLong(line []byte, at time.Time) {
	for {
		k := min(len(line), p.max)
		p.o.enqueuePiece(p.stream, line[:k], p.cont, at)
		line = line[k:]
		if len(line) == 0 {
			break
		}
		p.cont = true
	}
	p.cont = false
}

func trimCR(line []byte) []byte {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		return line[:n-1]
	}
	return line
}

// enqueueLines copies whole lines (each ending in '\n') into the queue.
func (o *Output) enqueueLines(stream string, lines []byte, at time.Time) {
	invalid := !validUTF8(lines)
	o.ring.addLines(stream, lines, at)
	if f := o.file.cur.Load(); f != nil {
		f.add(lines, false)
	}
	if o.sink.discard {
		o.keepLast(lines)
		return
	}
	o.mu.Lock()
	o.last.addLines(lines)
	room := o.roomLocked(len(lines))
	if o.closing {
		// The writer may be gone: nothing queued now would be counted.
		o.dropLocked(bytes.Count(lines, []byte{'\n'}))
		o.mu.Unlock()
		return
	}
	if len(lines) > room {
		cut := 0
		if room > 0 {
			cut = bytes.LastIndexByte(lines[:room], '\n') + 1
		}
		o.dropLocked(bytes.Count(lines[cut:], []byte{'\n'}))
		lines = lines[:cut]
	}
	o.queued += len(lines)
	for len(lines) > 0 {
		c := o.tailLocked(stream, at, lines)
		k := min(len(lines), cap(c.data)-len(c.data))
		if k < len(lines) {
			k = bytes.LastIndexByte(lines[:k], '\n') + 1
		}
		c.data = append(c.data, lines[:k]...)
		c.invalid = c.invalid || invalid
		lines = lines[k:]
	}
	o.mu.Unlock()
	o.wake()
}

// keepLast records the last of lines for LastLines, when the terminal is
// /dev/null and nothing is queued for it.
func (o *Output) keepLast(lines []byte) {
	o.mu.Lock()
	o.last.addLines(lines)
	o.mu.Unlock()
}

// enqueueChunk queues c, whose data are whole lines (each ending in '\n'),
// without copying them; the room it takes and the lines it may lose are those
// of enqueueLines.
func (o *Output) enqueueChunk(stream string, c *chunk, at time.Time) {
	o.ring.addLines(stream, c.data, at)
	if f := o.file.cur.Load(); f != nil {
		f.add(c.data, false)
	}
	if o.sink.discard {
		o.keepLast(c.data)
		o.sink.freeChunk(c)
		return
	}
	o.mu.Lock()
	o.last.addLines(c.data)
	room := o.roomLocked(len(c.data))
	if o.closing {
		o.dropLocked(bytes.Count(c.data, []byte{'\n'}))
		o.mu.Unlock()
		o.sink.freeChunk(c)
		return
	}
	if len(c.data) > room {
		cut := 0
		if room > 0 {
			cut = bytes.LastIndexByte(c.data[:room], '\n') + 1
		}
		o.dropLocked(bytes.Count(c.data[cut:], []byte{'\n'}))
		c.data = c.data[:cut]
	}
	if len(c.data) == 0 {
		o.mu.Unlock()
		o.sink.freeChunk(c)
		return
	}
	c.stream, c.at = stream, at
	o.queue = append(o.queue, c)
	o.queued += len(c.data)
	o.mu.Unlock()
	o.wake()
}

// enqueuePiece queues one piece of a split line, or a last line without newline.
func (o *Output) enqueuePiece(stream string, piece []byte, continued bool, at time.Time) {
	o.ring.addPiece(stream, piece, continued, at)
	if f := o.file.cur.Load(); f != nil {
		f.add(piece, true)
	}
	o.mu.Lock()
	o.last.add(piece)
	if o.sink.discard {
		o.mu.Unlock()
		return
	}
	if room := o.roomLocked(len(piece) + 1); o.closing || len(piece)+1 > room {
		o.dropLocked(1)
		o.mu.Unlock()
		return
	}
	data := make([]byte, len(piece)+1)
	copy(data, piece)
	data[len(piece)] = '\n'
	o.queue = append(o.queue, &chunk{data: data, stream: stream, at: at, piece: true, continued: continued})
	o.queued += len(data)
	o.mu.Unlock()
	o.wake()
}

// tailLocked returns a queued chunk with room for at least the first of lines
// (stream's lines read at at): packing small reads keeps the queue's memory near
// its bound. Chunks have one size, so that they are reused, unless a line is
// longer.
func (o *Output) tailLocked(stream string, at time.Time, lines []byte) *chunk {
	n := bytes.IndexByte(lines, '\n') + 1
	if k := len(o.queue); k > 0 {
		t := o.queue[k-1]
		// Same second: the JSON time of the lines stays theirs.
		if !t.piece && t.stream == stream && t.at.Unix() == at.Unix() && cap(t.data)-len(t.data) >= n {
			return t
		}
	}
	var c *chunk
	if n <= chunkSize {
		c = o.sink.newChunk()
		c.data = c.mem[:0]
	} else {
		c = &chunk{data: make([]byte, 0, n)}
	}
	c.stream, c.at = stream, at
	o.queue = append(o.queue, c)
	return c
}

// roomLocked returns the room in the queue for n bytes, waiting (o.mu held,
// released meanwhile) while they do not fit and the output still moves. An empty
// queue takes anything: a line longer than the queue is not lost for that.
func (o *Output) roomLocked(n int) int {
	for {
		room := o.opts.QueueBytes - o.queued
		if n <= room || o.queued == 0 || o.closing {
			return max(room, n)
		}
		wait := o.sink.untilBlocked(o.opts.BlockedAfter, time.Time{})
		if wait <= 0 {
			return room
		}
		o.room.wait(&o.mu, wait)
	}
}

func (o *Output) dropLocked(lines int) {
	if lines == 0 {
		return
	}
	if o.unreported == 0 {
		o.firstUnreported = time.Now()
	}
	o.unreported += uint64(lines)
	o.dropped.Add(uint64(lines))
}

// room lets a Pump wait, its lock released, until the writer frees room in
// a full queue.
type room struct {
	freed chan struct{} // closed when room is freed; made by a waiting Pump
}

// wait releases mu (held on entry), waits until room is freed or d passes,
// and takes mu again.
func (r *room) wait(mu *sync.Mutex, d time.Duration) {
	if r.freed == nil {
		r.freed = make(chan struct{})
	}
	freed := r.freed
	mu.Unlock()
	t := time.NewTimer(d)
	select {
	case <-freed:
	case <-t.C:
	}
	t.Stop()
	mu.Lock()
}

// signal wakes the waiting Pumps; their lock is held.
func (r *room) signal() {
	if r.freed != nil {
		close(r.freed)
		r.freed = nil
	}
}

func (o *Output) signalRoomLocked() {
	o.room.signal()
}

func (o *Output) wake() {
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// Close flushes the queue and stops the writer. Call it after every Pump has
// returned. It waits as long as the output moves; once a Write has been stuck for
// FlushTimeout, Close gives up: what is still queued counts as dropped, and the
// writer quits when its Write returns.
func (o *Output) Close() {
	o.closeOnce.Do(func() {
		o.mu.Lock()
		o.closing = true
		o.signalRoomLocked()
		o.mu.Unlock()
		o.wake()
		// Only a Write stuck for FlushTimeout since Close was called ends the
		// wait: a queue that takes longer to write out on a busy machine is
		// still written whole, and an output that has just been unblocked
		// (Ctrl-Q) gets FlushTimeout to move.
		if o.sink.waitMoving(o.done, o.opts.FlushTimeout, time.Now()) {
			return
		}
		o.abandoned.Store(true)
		o.mu.Lock()
		n := 0
		for _, c := range o.queue {
			n += bytes.Count(c.data, []byte{'\n'})
		}
		o.queue = nil
		o.dropLocked(n)
		o.mu.Unlock()
	})
}

// run is the writer: it formats queued lines in batches and writes each batch
// to the sink in one call.
func (o *Output) run() {
	defer close(o.done)
	w := &batchWriter{o: o, encoders: map[string]lineEncoder{}, buf: make([]byte, 0, 2*batchSize)}
	var spare []*chunk
	for {
		o.mu.Lock()
		var batch []*chunk
		if len(o.queue) > 0 {
			// Two slices take turns: the Pumps fill one while this writes the other.
			batch, o.queue = o.queue, spare[:0]
		}
		closing := o.closing
		o.mu.Unlock()
		if len(batch) > 0 {
			w.write(batch)
			clear(batch)
			spare = batch[:0]
		}
		if o.abandoned.Load() {
			return
		}
		o.mu.Lock()
		empty := len(o.queue) == 0
		report := o.unreported > 0 && w.ok &&
			(empty || closing || time.Since(o.firstUnreported) >= dropReportEvery)
		n := o.unreported
		if report {
			o.unreported = 0
		}
		o.mu.Unlock()
		if report {
			o.warn.Warnf("dropped %d lines of %s output (output blocked)", n, o.service)
		}
		switch {
		case !empty:
		case closing:
			return
		default:
			<-o.kick
		}
	}
}

// release gives a formatted chunk's room back to the queue, and its memory to
// the next lines.
func (o *Output) release(c *chunk) {
	o.mu.Lock()
	o.queued -= len(c.data)
	o.signalRoomLocked()
	o.mu.Unlock()
	o.sink.freeChunk(c)
}

// newChunk returns a chunk whose mem is a chunkSize buffer.
func (s *Sink) newChunk() *chunk {
	if c, ok := s.chunks.Get().(*chunk); ok {
		return c
	}
	return &chunk{mem: make([]byte, chunkSize)}
}

// freeChunk gives c's memory to the next lines, if it came from newChunk.
func (s *Sink) freeChunk(c *chunk) {
	if c != nil && c.mem != nil {
		*c = chunk{mem: c.mem}
		s.chunks.Put(c)
	}
}

// batchWriter is the writer goroutine's state.
type batchWriter struct {
	o        *Output
	encoders map[string]lineEncoder // by stream
	buf      []byte
	lines    int  // lines in buf
	ok       bool // the last Write succeeded: the output moves
}

func (w *batchWriter) write(batch []*chunk) {
	enabled := w.o.sink.log.IsLevelEnabled(logrus.InfoLevel)
	for i, c := range batch {
		if !enabled {
			w.o.release(c)
			continue
		}
		enc := w.encoder(c.stream)
		be, block := enc.(blockEncoder)
		block = block && !c.piece
		for d := c.data; len(d) > 0; {
			var n int
			if block {
				w.buf, d, n = be.appendBlock(w.buf, d, !c.invalid, batchSize)
			} else {
				w.buf, d, n = appendLines(enc, w.buf, d, c)
			}
			w.lines += n
			if len(w.buf) < batchSize {
				continue
			}
			w.flush()
			if w.o.abandoned.Load() {
				// Close has given up and counted the queue; the rest of this
				// batch is ours to count.
				n := bytes.Count(d, []byte{'\n'})
				for _, c := range batch[i+1:] {
					n += bytes.Count(c.data, []byte{'\n'})
				}
				w.o.mu.Lock()
				w.o.dropLocked(n)
				w.o.mu.Unlock()
				return
			}
		}
		// Its lines are in w.buf now: the chunk is free before the Write.
		w.o.release(c)
	}
	w.flush()
}

// appendLines formats the lines of d (part of c.data) until dst holds a batch;
// it returns what is left of d and how many lines it formatted.
func appendLines(enc lineEncoder, dst, d []byte, c *chunk) (_, rest []byte, n int) {
	for len(d) > 0 && len(dst) < batchSize {
		j := bytes.IndexByte(d, '\n')
		line := d[:j]
		d = d[j+1:]
		if !c.piece {
			line = trimCR(line)
		}
		dst = enc.appendLine(dst, line, c.continued, c.at)
		n++
	}
	return dst, d, n
}

func (w *batchWriter) flush() {
	if len(w.buf) == 0 {
		return
	}
	_, err := w.o.sink.Write(w.buf)
	w.ok = err == nil
	if err != nil {
		w.o.mu.Lock()
		w.o.dropLocked(w.lines)
		w.o.mu.Unlock()
	}
	w.lines = 0
	w.buf = w.buf[:0]
	if cap(w.buf) > 4*batchSize {
		// A long line grew the buffer: give its memory back.
		w.buf = make([]byte, 0, 2*batchSize)
	}
}

func (w *batchWriter) encoder(stream string) lineEncoder {
	enc, ok := w.encoders[stream]
	if !ok {
		if lf, fast := w.o.formatter.(lineFormatter); fast {
			enc = lf.newLineEncoder(w.o.service, stream)
		} else {
			enc = newEntryEncoder(w.o.sink.log, w.o.formatter, w.o.service, stream)
		}
		w.encoders[stream] = enc
	}
	return enc
}

// entryEncoder formats service lines with any other logrus Formatter, one
// reused entry per line: slower, but the same bytes as logging each line.
type entryEncoder struct {
	f       logrus.Formatter
	line    *logrus.Entry
	cont    *logrus.Entry
	scratch bytes.Buffer
}

func newEntryEncoder(log *logrus.Logger, f logrus.Formatter, service, stream string) *entryEncoder {
	entry := func(data logrus.Fields) *logrus.Entry {
		e := logrus.NewEntry(log)
		e.Data = data
		e.Level = logrus.InfoLevel
		return e
	}
	return &entryEncoder{
		f:    f,
		line: entry(logrus.Fields{FieldService: service, FieldStream: stream}),
		cont: entry(logrus.Fields{FieldService: service, FieldStream: stream, FieldContinued: true}),
	}
}

func (x *entryEncoder) appendLine(dst, line []byte, continued bool, at time.Time) []byte {
	e := x.line
	if continued {
		e = x.cont
	}
	e.Time = at
	e.Message = string(line)
	x.scratch.Reset()
	e.Buffer = &x.scratch
	b, err := x.f.Format(e)
	e.Buffer = nil
	if err != nil {
		// Keep the line rather than lose it to a formatter bug.
		return fmt.Appendf(dst, "%s | %s (format error: %v)\n", e.Data[FieldService], strings.ToValidUTF8(string(line), "\uFFFD"), err)
	}
	return append(dst, b...)
}

// lineRing keeps the last lines read, reusing its buffers.
type lineRing struct {
	lines [lastLinesKept][]byte
	next  int
	n     int
}

func (r *lineRing) add(line []byte) {
	line = line[:min(len(line), lastLineMax)]
	r.lines[r.next] = append(r.lines[r.next][:0], line...)
	r.next = (r.next + 1) % lastLinesKept
	r.n = min(r.n+1, lastLinesKept)
}

// addLines adds whole lines (each ending in '\n'); only the last few are kept,
// so only they are looked at.
func (r *lineRing) addLines(lines []byte) {
	start := len(lines)
	for k := 0; k < lastLinesKept && start > 0; k++ {
		start = bytes.LastIndexByte(lines[:start-1], '\n') + 1
	}
	for rest := lines[start:]; len(rest) > 0; {
		j := bytes.IndexByte(rest, '\n')
		r.add(trimCR(rest[:j]))
		rest = rest[j+1:]
	}
}

func (r *lineRing) lastN(n int) []string {
	n = max(0, min(n, r.n))
	out := make([]string, n)
	for i := range n {
		k := (r.next - n + i + lastLinesKept) % lastLinesKept
		out[i] = strings.ToValidUTF8(string(r.lines[k]), "\uFFFD")
	}
	return out
}
