package supervisor

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// A service's log file gets its lines as the service wrote them: CRLF and
// invalid UTF-8 kept, no prefix; a line longer than MaxLine in pieces, as on
// the terminal, which is formatted as before.
func TestLogFileHasRawLines(t *testing.T) {
	dir := t.TempDir()
	var term syncBuffer
	log := logrus.New()
	log.SetFormatter(NewTextFormatter(false))
	sink := NewSink(&term, log)
	sink.SetLogFiles(LogFiles{Dir: dir, MaxSize: MiB, MaxFiles: 1})
	o := sink.NewOutput("p", OutputOptions{MaxLine: 8})
	in := "a\r\nb\n\xff\xfe\n0123456789abc\ntail"
	if err := o.Pump("stdout", strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	o.Close()
	sink.CloseLogFiles(10 * time.Second)
	got, err := os.ReadFile(filepath.Join(dir, "p.log"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "a\r\nb\n\xff\xfe\n01234567\n89abc\ntail\n"; string(got) != want {
		t.Errorf("file %q, want %q", got, want)
	}
	if !strings.Contains(term.String(), "| a\n") || !strings.Contains(term.String(), "| \uFFFD\n") {
		t.Errorf("terminal:\n%s", term.String())
	}
	if o.FileDropped() != 0 {
		t.Errorf("%d dropped", o.FileDropped())
	}
}

// A log file that cannot be written costs lines, counted; the error is logged
// once, and the count once writing works again. The service's Pump never
// waits for it.
func TestLogFileFailingDropsAndReports(t *testing.T) {
	dir := t.TempDir()
	var term syncBuffer
	log := logrus.New()
	log.SetFormatter(NewTextFormatter(false))
	sink := NewSink(&term, log)
	var broken atomic.Bool
	broken.Store(true)
	sink.SetLogFiles(LogFiles{Dir: dir, MaxSize: MiB, MaxFiles: 1, Check: func(string) error {
		if broken.Load() {
			return errors.New("disk on fire")
		}
		return nil
	}})
	o := sink.NewOutput("p", OutputOptions{})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pumped := make(chan error, 1)
	go func() { pumped <- o.Pump("stdout", r) }()
	w.Write([]byte("one\ntwo\n"))
	eventually(t, "two lines dropped", func() bool { return o.FileDropped() == 2 })
	w.Write([]byte("three\n"))
	eventually(t, "three lines dropped", func() bool { return o.FileDropped() == 3 })
	if n := strings.Count(term.String(), "cannot write the log file"); n != 1 {
		t.Errorf("error logged %d times, want once:\n%s", n, term.String())
	}
	broken.Store(false)
	w.Write([]byte("four\n"))
	eventually(t, "the report", func() bool {
		return strings.Contains(term.String(), "the log file is written again; 3 lines were dropped (disk on fire)")
	})
	w.Close()
	if err := <-pumped; err != nil {
		t.Fatal(err)
	}
	o.Close()
	sink.CloseLogFiles(10 * time.Second)
	got, _ := os.ReadFile(filepath.Join(dir, "p.log"))
	if string(got) != "four\n" {
		t.Errorf("file %q", got)
	}
	for _, l := range []string{"| one\n", "| two\n", "| three\n", "| four\n"} {
		if !strings.Contains(term.String(), l) {
			t.Errorf("terminal lacks %q:\n%s", l, term.String())
		}
	}
}

// A log file replaced under the writer (its folder removed, a link planted)
// is not written through: a link is refused, a new folder is written in.
func TestLogFileNotWrittenThroughALink(t *testing.T) {
	dir := t.TempDir()
	var term syncBuffer
	log := logrus.New()
	log.SetFormatter(NewTextFormatter(false))
	sink := NewSink(&term, log)
	sink.SetLogFiles(LogFiles{Dir: dir, MaxSize: MiB, MaxFiles: 1})
	o := sink.NewOutput("p", OutputOptions{})
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("precious\n"), 0o600)
	if err := os.Symlink(victim, filepath.Join(dir, "p.log")); err != nil {
		t.Fatal(err)
	}
	o.Pump("stdout", strings.NewReader("x\n"))
	o.Close()
	sink.CloseLogFiles(10 * time.Second)
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("written through the link: %q", b)
	}
	if o.FileDropped() != 1 || !strings.Contains(term.String(), "is not a regular file") {
		t.Errorf("dropped %d:\n%s", o.FileDropped(), term.String())
	}
}

// With /dev/null as the terminal, service lines are not formatted.
func TestSinkKnowsDevNull(t *testing.T) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !isDevNull(null) || isDevNull(f) || isDevNull(&bytes.Buffer{}) {
		t.Error("isDevNull wrong")
	}
	// Lines still reach the log file, the ring and LastLines.
	dir := t.TempDir()
	sink := NewSink(null, logrus.New())
	sink.SetLogFiles(LogFiles{Dir: dir, MaxSize: MiB, MaxFiles: 1})
	o := sink.NewOutput("p", OutputOptions{})
	o.Pump("stdout", strings.NewReader("one\ntwo\n"))
	o.Close()
	sink.CloseLogFiles(10 * time.Second)
	if got, _ := os.ReadFile(filepath.Join(dir, "p.log")); string(got) != "one\ntwo\n" {
		t.Errorf("file %q", got)
	}
	if got := o.LastLines(5); len(got) != 2 || got[1] != "two" {
		t.Errorf("LastLines %q", got)
	}
	if lines := sink.Logs("p").Last(5); len(lines) != 2 {
		t.Errorf("ring %v", lines)
	}
}
