package supervisor

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"gopkg.in/natefinch/lumberjack.v2"
)

const (
	// DefaultFileQueueBytes bounds the lines of one log file waiting for the
	// disk, the chunk being written included.
	DefaultFileQueueBytes = 4 << 20
	// fileWriteMax is the most written in one Write, cut at a line's end, so
	// that a rotation falls between lines and a Write never exceeds the
	// library's size limit (at least 1 MiB): a chunk.
	fileWriteMax = chunkSize
	// compressWait bounds how long a closed file waits for the compression
	// of its rotated files.
	compressWait = 10 * time.Second
	// MiB is the unit of LogFiles.MaxSize: the rotation library counts in it.
	MiB = 1 << 20
)

// LogFiles says where each service's lines are also written, raw, as the
// service wrote them (SPEC §9): <Dir>/<service>.log, rotated by size, the
// rotated files compressed. The zero value writes no file.
type LogFiles struct {
	Dir string // "" for no log files
	// MaxSize is the size at which a file is rotated, in bytes; the rotation
	// library counts in whole MiB, so it is rounded down to one, at least 1.
	MaxSize int64
	// MaxFiles is how many rotated (compressed) files are kept, at least 1.
	MaxFiles int
	// Check vets Dir before a file in it is opened or opened again (SPEC §2:
	// the library follows links, so the folder must be trusted first); nil
	// checks nothing.
	Check func(dir string) error
	// QueueBytes bounds each file's queue; 0: DefaultFileQueueBytes.
	QueueBytes int
	// BlockedAfter is how long one Write to a file may take before the disk
	// counts as blocked and lines are dropped rather than waited for; 0:
	// DefaultBlockedAfter.
	BlockedAfter time.Duration
}

func (f LogFiles) same(g LogFiles) bool {
	return f.Dir == g.Dir && f.MaxSize == g.MaxSize && f.MaxFiles == g.MaxFiles &&
		f.QueueBytes == g.QueueBytes && f.BlockedAfter == g.BlockedAfter
}

// logFiles holds each service's file slot by name: a slot outlives the
// Outputs of the service's starts and the log files of its reloads.
type logFiles struct {
	mu    sync.Mutex
	opts  LogFiles
	slots map[string]*fileSlot
}

// fileSlot is where a service's Output finds its current log file, if any.
type fileSlot struct {
	cur     atomic.Pointer[fileLog]
	dropped atomic.Uint64 // lines lost by every file of the service
}

// SetLogFiles applies opts to every service's log file, the running ones and
// those to come: a changed setting closes each file (its queue is written
// first, in the background) and opens the new one; the same setting keeps
// them. It never waits for a disk.
func (s *Sink) SetLogFiles(opts LogFiles) {
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = DefaultFileQueueBytes
	}
	if opts.BlockedAfter <= 0 {
		opts.BlockedAfter = DefaultBlockedAfter
	}
	s.files.mu.Lock()
	defer s.files.mu.Unlock()
	if opts.same(s.files.opts) {
		s.files.opts.Check = opts.Check
		return
	}
	s.files.opts = opts
	for name, slot := range s.files.slots {
		if old := slot.cur.Swap(s.newFileLogLocked(name, slot)); old != nil {
			old.close()
		}
	}
}

// fileSlot returns service's slot, made (with a file under the current
// setting) on first use.
func (s *Sink) fileSlot(service string) *fileSlot {
	s.files.mu.Lock()
	defer s.files.mu.Unlock()
	slot, ok := s.files.slots[service]
	if !ok {
		if s.files.slots == nil {
			s.files.slots = map[string]*fileSlot{}
		}
		slot = &fileSlot{}
		slot.cur.Store(s.newFileLogLocked(service, slot))
		s.files.slots[service] = slot
	}
	return slot
}

// CloseLogFiles writes out every log file's queue and closes the files,
// waiting at most timeout in all (a blocked disk is given up on).
func (s *Sink) CloseLogFiles(timeout time.Duration) {
	s.files.mu.Lock()
	var files []*fileLog
	for _, slot := range s.files.slots {
		if f := slot.cur.Swap(nil); f != nil {
			f.close()
			files = append(files, f)
		}
	}
	s.files.opts = LogFiles{}
	s.files.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	for _, f := range files {
		select {
		case <-f.done:
		case <-t.C:
			return
		}
	}
}

func (s *Sink) newFileLogLocked(service string, slot *fileSlot) *fileLog {
	opts := s.files.opts
	if opts.Dir == "" {
		return nil
	}
	path := filepath.Join(opts.Dir, service+".log")
	f := &fileLog{
		opts: opts,
		path: path,
		lj: &lumberjack.Logger{
			Filename:   path,
			MaxSize:    int(max(opts.MaxSize/MiB, 1)),
			MaxBackups: max(opts.MaxFiles, 1),
			Compress:   true,
		},
		slot: slot,
		sink: s,
		warn: s.log.WithFields(logrus.Fields{FieldService: service, "file": path}),
		kick: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	go f.run()
	return f
}

// fileLog is one service's log file under one setting: a bounded queue filled
// by the service's Pumps and a writer goroutine of its own, so that a slow or
// failing disk never holds up the service nor the terminal: a full queue is
// waited for only while the disk moves, as a slow terminal is (SPEC §5);
// once a Write has been stuck for BlockedAfter, or when writing fails (disk
// full, folder removed or read-only), lines are dropped, counted, and the
// count is logged once writing works again.
type fileLog struct {
	opts    LogFiles
	path    string
	lj      *lumberjack.Logger
	slot    *fileSlot
	warn    *logrus.Entry
	writing writeTimer

	kick chan struct{} // a send wakes the writer; capacity 1, never blocks
	done chan struct{} // closed when the writer has returned

	sink *Sink // its chunk pool

	mu         sync.Mutex
	queue      []*chunk // whole lines waiting for the writer
	queued     int      // bytes in queue and in the chunk being written
	closing    bool
	unreported uint64 // lines dropped since writing last worked
	room       room
}

// add queues whole lines (each ending in '\n'); piece, when set, is one piece
// of a line and gets a '\n' after it. Lines are copied into chunks of the
// sink's pool, which the writer gives back once written: the queue's memory
// is reused, never grown.
func (f *fileLog) add(lines []byte, piece bool) {
	n := len(lines)
	if piece {
		n++
	}
	f.mu.Lock()
	for !f.closing && f.queued > 0 && f.queued+n > f.opts.QueueBytes {
		wait := f.writing.untilBlocked(f.opts.BlockedAfter, time.Time{})
		if wait <= 0 {
			break
		}
		f.room.wait(&f.mu, wait)
	}
	if f.closing {
		// Replaced by a reload while this Pump held it: the lines go to
		// the new file.
		if next := f.slot.cur.Load(); next != nil && next != f {
			f.mu.Unlock()
			next.add(lines, piece)
			return
		}
	}
	if f.closing || f.queued > 0 && f.queued+n > f.opts.QueueBytes {
		k := 1
		if !piece {
			k = bytes.Count(lines, []byte{'\n'})
		}
		f.dropLocked(uint64(k))
		f.mu.Unlock()
		return
	}
	f.queued += n
	if piece {
		c := f.tailLocked(n)
		c.data = append(append(c.data, lines...), '\n')
	}
	for !piece && len(lines) > 0 {
		c := f.tailLocked(bytes.IndexByte(lines, '\n') + 1)
		k := min(len(lines), cap(c.data)-len(c.data))
		if k < len(lines) {
			k = bytes.LastIndexByte(lines[:k], '\n') + 1
		}
		c.data = append(c.data, lines[:k]...)
		lines = lines[k:]
	}
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// tailLocked returns the queued chunk with room for n more bytes, a new one
// when the last has none.
func (f *fileLog) tailLocked(n int) *chunk {
	if k := len(f.queue); k > 0 {
		if t := f.queue[k-1]; cap(t.data)-len(t.data) >= n {
			return t
		}
	}
	var c *chunk
	if n <= chunkSize {
		c = f.sink.newChunk()
		c.data = c.mem[:0]
	} else {
		c = &chunk{data: make([]byte, 0, n)}
	}
	f.queue = append(f.queue, c)
	return c
}

func (f *fileLog) dropLocked(lines uint64) {
	f.unreported += lines
	f.slot.dropped.Add(lines)
}

func (f *fileLog) signalRoomLocked() {
	f.room.signal()
}

// close makes the writer write what is queued, close the file and return.
func (f *fileLog) close() {
	f.mu.Lock()
	f.closing = true
	f.signalRoomLocked()
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// run is the writer: it takes the queued chunks at once and writes them one
// by one, giving each chunk's room back once written, while the Pumps fill the
// queue again.
func (f *fileLog) run() {
	defer close(f.done)
	w := fileWriter{f: f}
	defer func() {
		f.lj.Close()
		f.waitCompressed(compressWait)
		f.mu.Lock()
		n := f.unreported
		f.mu.Unlock()
		if n > 0 {
			f.warn.WithField("dropped", n).Warnf("closed the log file; %d lines were dropped (%s)", n, w.reason())
		}
	}()
	var spare []*chunk
	for {
		f.mu.Lock()
		batch := f.queue
		f.queue = spare[:0]
		closing := f.closing
		f.mu.Unlock()
		for _, c := range batch {
			w.write(c.data)
			f.mu.Lock()
			f.queued -= len(c.data)
			f.signalRoomLocked()
			f.mu.Unlock()
			f.sink.freeChunk(c)
		}
		clear(batch)
		spare = batch[:0]
		if len(batch) > 0 {
			continue
		}
		if closing {
			return
		}
		<-f.kick
	}
}

// waitCompressed waits, at most d, until no rotated file of f is left to
// compress: the library compresses in a goroutine of its own that nothing
// waits for, so an exit in the middle would leave a cut .gz beside its source.
func (f *fileLog) waitCompressed(d time.Duration) {
	ext := filepath.Ext(f.path)
	// The library's backup names: <name>-2006-01-02T15-04-05.000.log; a
	// service name has no capital T, so another service's file never matches.
	pattern := strings.TrimSuffix(f.path, ext) + "-[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T*" + ext
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(d)
	for {
		if left, _ := filepath.Glob(pattern); len(left) == 0 || time.Now().After(deadline) {
			return
		}
		<-tick.C
	}
}

// fileWriter is the writer goroutine's state.
type fileWriter struct {
	f *fileLog
	// open: the library holds the file open; it was vetted, and ino is the
	// file at the path as last written.
	open    bool
	ino     uint64
	failure error // the last failure, nil while writing works
}

// write writes b (whole lines) in Writes of at most fileWriteMax, each ending
// at a line's end when the line is short enough.
func (w *fileWriter) write(b []byte) {
	for len(b) > 0 {
		k := min(len(b), fileWriteMax)
		if k < len(b) {
			if j := bytes.LastIndexByte(b[:k], '\n'); j >= 0 {
				k = j + 1
			}
		}
		w.writeOnce(b[:k])
		b = b[k:]
	}
}

func (w *fileWriter) writeOnce(b []byte) {
	f := w.f
	err := w.reopenIfMoved()
	if err == nil {
		was := w.ino
		f.writing.begin()
		_, err = f.lj.Write(b)
		f.writing.end()
		w.open = true
		if fi, serr := os.Lstat(f.path); serr == nil {
			w.ino = inode(fi)
		}
		if was != 0 && w.ino != was {
			// The library rotated: it names the rotated file after the
			// time in milliseconds, and a second rotation within the same
			// millisecond (a queue written at memory speed) would rename
			// over the first, losing it. The next one is a millisecond
			// later at least.
			now := time.Now()
			time.Sleep(now.Truncate(time.Millisecond).Add(time.Millisecond).Sub(now))
		}
	}
	f.mu.Lock()
	if err != nil {
		f.dropLocked(uint64(bytes.Count(b, []byte{'\n'})))
		f.mu.Unlock()
		if w.failure == nil {
			f.warn.WithError(err).Error("cannot write the log file; its lines are dropped (and counted) until it works again")
		}
		w.failure = err
		return
	}
	n := f.unreported
	f.unreported = 0
	f.mu.Unlock()
	if n > 0 {
		f.warn.WithField("dropped", n).Warnf("the log file is written again; %d lines were dropped (%s)", n, w.reason())
	}
	w.failure = nil
}

// reason says why lines were dropped.
func (w *fileWriter) reason() string {
	if w.failure != nil {
		return w.failure.Error()
	}
	return "the disk was blocked"
}

// reopenIfMoved closes the file when what lies at its path is no longer the
// file written last (removed with its folder, rotated by hand, replaced), and
// vets the folder and the path before the library opens it again: the library
// follows links.
func (w *fileWriter) reopenIfMoved() error {
	f := w.f
	if w.open {
		fi, err := os.Lstat(f.path)
		if err == nil && fi.Mode().IsRegular() && inode(fi) == w.ino {
			return nil
		}
		f.lj.Close()
		w.open = false
	}
	if f.opts.Check != nil {
		if err := f.opts.Check(f.opts.Dir); err != nil {
			return err
		}
	}
	fi, err := os.Lstat(f.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file (%s): LavaVisor does not write through it", f.path, fi.Mode().Type())
	}
	return nil
}

func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}
