package supervisor

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// BenchmarkOutputFollower is BenchmarkOutputThroughput's text cases with a
// `lavavisor logs -f` of the service beside them: none, one that took a cursor
// and a Wait channel and never reads (a terminal paused with Ctrl-S), and one
// that reads every line as it comes. MB/s counts the bytes the child wrote.
func BenchmarkOutputFollower(b *testing.B) {
	for _, out := range []string{"text-file", "text-discard"} {
		for _, follower := range []string{"none", "idle", "live"} {
			b.Run(out+"/"+follower, func(b *testing.B) {
				var w io.Writer = io.Discard
				if out == "text-file" {
					f, err := os.Create(filepath.Join(b.TempDir(), "log"))
					if err != nil {
						b.Fatal(err)
					}
					defer f.Close()
					w = f
				}
				log := logrus.New()
				log.SetFormatter(NewTextFormatter(false))
				sink := NewSink(w, log)
				o := sink.NewOutput("provider-eth", OutputOptions{BlockedAfter: time.Minute})
				ring := sink.Logs("provider-eth")
				stop := make(chan struct{})
				followed := make(chan uint64, 1)
				switch follower {
				case "idle":
					_ = ring.Wait(ring.Cursor())
				case "live":
					go func() {
						var cursor, read uint64
						for {
							select {
							case <-ring.Wait(cursor):
							case <-stop:
								followed <- read
								return
							}
							var lines []LogLine
							lines, cursor, _ = ring.Since(cursor, 1000)
							read += uint64(len(lines))
						}
					}()
				}
				benchPump(b, o)
				close(stop)
				if follower == "live" {
					b.ReportMetric(float64(<-followed)/float64(b.N), "followed/line")
				}
			})
		}
	}
}

// benchPump pumps b.N lines of 100 bytes (newline included) from a real pipe
// through o, and closes it.
func benchPump(b *testing.B, o *Output) {
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
	b.ReportMetric(float64(cpuTime(b)-cpu)/float64(b.N), "cpu-ns/line")
	if err := <-written; err != nil {
		b.Fatal(err)
	}
	if n := o.Dropped(); n != 0 {
		b.Fatalf("%d lines dropped", n)
	}
}

// BenchmarkLogRingAdd is the ring's share of a Pump's work: reads of 1 line
// (a service writing each line on its own) and of 256 KiB, of 100-byte lines.
func BenchmarkLogRingAdd(b *testing.B) {
	line := append(bytes.Repeat([]byte("lavap INF 12:00:00 relay ok "), 4)[:99], '\n')
	for _, bc := range []struct {
		name  string
		lines int
	}{{"1-line", 1}, {"256KiB", readSize / len(line)}} {
		b.Run(bc.name, func(b *testing.B) {
			r := newLogRing()
			data := bytes.Repeat(line, bc.lines)
			at := time.Now()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				r.addLines("stderr", data, at)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*bc.lines), "ns/line")
		})
	}
}
