package supervisor

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// BenchmarkOutputThroughput pumps 100-byte lines (newline included) from a real
// pipe through one service's Output; MB/s counts the bytes the child wrote.
func BenchmarkOutputThroughput(b *testing.B) {
	cases := []struct {
		name   string
		format func() logrus.Formatter
		toFile bool
	}{
		{"text-file", func() logrus.Formatter { return NewTextFormatter(false) }, true},
		{"json-file", NewJSONFormatter, true},
		{"text-discard", func() logrus.Formatter { return NewTextFormatter(false) }, false},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			var w io.Writer = io.Discard
			if bc.toFile {
				f, err := os.Create(filepath.Join(b.TempDir(), "log"))
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				w = f
			}
			log := logrus.New()
			log.SetFormatter(bc.format())
			// A loaded disk may stall a Write beyond DefaultBlockedAfter: this
			// measures throughput, so the pipe waits instead of dropping lines.
			o := NewSink(w, log).NewOutput("provider-eth", OutputOptions{BlockedAfter: time.Minute})
			r, pw, err := os.Pipe()
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			enlargePipe(r)
			line := append(bytes.Repeat([]byte("lavap INF 12:00:00 relay ok "), 4)[:99], '\n')
			block := bytes.Repeat(line, 1000)
			b.SetBytes(int64(len(line)))
			cpu := cpuTime(b)
			b.ResetTimer()
			written := make(chan error, 1)
			go func() {
				defer pw.Close()
				for left := b.N; left > 0; {
					n := min(left, 1000)
					if _, err := pw.Write(block[:n*len(line)]); err != nil {
						written <- err
						return
					}
					left -= n
				}
				written <- nil
			}()
			if err := o.Pump("stderr", r); err != nil {
				b.Fatal(err)
			}
			o.Close()
			b.StopTimer()
			// On a shared machine MB/s varies with the load; CPU per line does not.
			b.ReportMetric(float64(cpuTime(b)-cpu)/float64(b.N), "cpu-ns/line")
			if err := <-written; err != nil {
				b.Fatal(err)
			}
			if n := o.Dropped(); n != 0 {
				b.Fatalf("%d lines dropped", n)
			}
		})
	}
}

// cpuTime is the CPU time used by the process so far, the pipe writer included.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
