package upgrade

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func TestProgressLogsWhenNotATerminal(t *testing.T) {
	log, hook := testLog()
	var out bytes.Buffer
	p := newProgress(&out, log, "v6.2.5", 1000)
	if p.tty {
		t.Fatal("a buffer taken for a terminal")
	}
	p.Write(make([]byte, 100))
	if len(hook.AllEntries()) != 0 {
		t.Fatalf("logged before the interval:\n%s", logText(hook))
	}
	p.last = time.Now().Add(-logInterval)
	p.start = time.Now().Add(-time.Second)
	p.Write(make([]byte, 400))
	if !hasLog(hook, logrus.InfoLevel, "downloading", "bytes=500", "total=1000", "MB/s") {
		t.Errorf("no progress line:\n%s", logText(hook))
	}
	p.finish()
	if out.Len() != 0 {
		t.Errorf("wrote %q to a non-terminal", out.String())
	}

	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if newProgress(f, log, "v6.2.5", 1).tty {
		t.Error("a regular file taken for a terminal")
	}
	if newProgress(nil, log, "v6.2.5", 1) != nil {
		t.Error("progress without a writer")
	}
}

func TestProgressBarOnATerminal(t *testing.T) {
	if tty, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0); err == nil {
		if !newProgress(tty, nil, "v6.2.5", 1).tty {
			t.Error("a pseudo-terminal not taken for a terminal")
		}
		tty.Close()
	}
	var out bytes.Buffer
	p := newProgress(&out, nil, "v6.2.5", 2_000_000)
	p.tty = true
	p.last = time.Now().Add(-time.Second)
	p.Write(make([]byte, 1_000_000))
	if got := out.String(); !strings.HasPrefix(got, "\rlavap v6.2.5 [===============               ] 1.0 MB / 2.0 MB") {
		t.Errorf("bar %q", got)
	}
	p.Write(make([]byte, 1_000_000))
	p.finish()
	if got := out.String(); !strings.HasSuffix(got, "\n") || !strings.Contains(got, "[==============================] 2.0 MB / 2.0 MB") {
		t.Errorf("final bar %q", got)
	}

	out.Reset()
	p = newProgress(&out, nil, "v6.2.5", -1)
	p.tty = true
	p.Write(make([]byte, 3_000_000))
	p.finish()
	if !strings.Contains(out.String(), "lavap v6.2.5 3.0 MB") {
		t.Errorf("unknown total: %q", out.String())
	}
}
