package supervisor

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

// BenchmarkPipeline pumps 100-byte lines from 1 and 4 children (real pipes)
// through one sink, as `start` does: "stderr" formats them to a file (the
// terminal redirected), "stderr+logs-dir" also writes each raw to its log
// file, "logs-dir" only that (stderr is /dev/null), and
// "raw-copy" is the floor: each pipe copied as it is to a file of its own, no
// line found, nothing formatted. cpu-ns/line over 100 is CPU s/GB.
func BenchmarkPipeline(b *testing.B) {
	line := append(bytes.Repeat([]byte("lavap INF 12:00:00 relay ok "), 4)[:99], '\n')
	block := bytes.Repeat(line, 1000)
	for _, writers := range []int{1, 4} {
		for _, dest := range []string{"raw-copy", "stderr", "stderr+logs-dir", "logs-dir"} {
			b.Run(fmt.Sprintf("writers=%d/%s", writers, dest), func(b *testing.B) {
				dir := b.TempDir()
				stderr := filepath.Join(dir, "stderr")
				if dest == "logs-dir" {
					stderr = os.DevNull
				}
				f, err := os.OpenFile(stderr, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				log := logrus.New()
				log.SetFormatter(NewTextFormatter(false))
				sink := NewSink(f, log)
				if strings.HasSuffix(dest, "logs-dir") {
					sink.SetLogFiles(LogFiles{Dir: filepath.Join(dir, "logs"), MaxSize: 1 << 40, MaxFiles: 1, BlockedAfter: time.Minute})
				}
				b.SetBytes(int64(len(line)))
				per := (b.N + writers - 1) / writers
				cpu := cpuTime(b)
				b.ResetTimer()
				var wg sync.WaitGroup
				errs := make(chan error, 2*writers)
				var outs []*Output
				for i := range writers {
					r, pw, err := os.Pipe()
					if err != nil {
						b.Fatal(err)
					}
					enlargePipe(r)
					wg.Add(2)
					go func() {
						defer wg.Done()
						defer pw.Close()
						for left := per; left > 0; {
							n := min(left, 1000)
							if _, err := pw.Write(block[:n*len(line)]); err != nil {
								errs <- err
								return
							}
							left -= n
						}
					}()
					name := fmt.Sprintf("w%d", i)
					if dest == "raw-copy" {
						out, err := os.Create(filepath.Join(dir, name))
						if err != nil {
							b.Fatal(err)
						}
						go func() {
							defer wg.Done()
							defer r.Close()
							defer out.Close()
							buf := make([]byte, readSize)
							if _, err := io.CopyBuffer(struct{ io.Writer }{out}, struct{ io.Reader }{r}, buf); err != nil {
								errs <- err
							}
						}()
						continue
					}
					o := sink.NewOutput(name, OutputOptions{BlockedAfter: time.Minute})
					outs = append(outs, o)
					go func() {
						defer wg.Done()
						defer r.Close()
						if err := o.Pump("stderr", r); err != nil {
							errs <- err
						}
					}()
				}
				wg.Wait()
				for _, o := range outs {
					o.Close()
				}
				sink.CloseLogFiles(time.Minute)
				b.StopTimer()
				b.ReportMetric(float64(cpuTime(b)-cpu)/float64(per*writers), "cpu-ns/line")
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
				for _, o := range outs {
					if n := o.Dropped() + o.FileDropped(); n != 0 {
						b.Fatalf("%d lines dropped", n)
					}
				}
			})
		}
	}
}
