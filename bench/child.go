package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// Every supervisor runs the same children: this binary, re-executed as
// `bench child write|wait|orphans|exit ...`. A child's -tag is unique to its run, so that
// its processes can be found in /proc (survivors, clean-up) whoever started it.

const (
	lineLen       = 100  // bytes per line, newline included
	linesPerWrite = 1000 // one write of 100 kB
	seqDigits     = 12
)

// childArgs are a child's arguments after the binary.
func childArgs(mode, id, tag string, extra ...string) []string {
	return append([]string{"child", mode, "-id", id, "-tag", tag}, extra...)
}

func runChild(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "child: want a mode: write, wait, orphans or exit")
		return 2
	}
	mode := args[0]
	fs := flag.NewFlagSet("child "+mode, flag.ContinueOnError)
	id := fs.String("id", "", "child name, first word of every line it writes")
	fs.String("tag", "", "marker of the run, only there to be found in /proc")
	seconds := fs.Float64("seconds", 5, "write: how long to write")
	count := fs.String("count", "", "write: file that receives `lines start_ns end_ns` on exit; exit: file that gets one line per start")
	marker := fs.String("marker", "", "wait, orphans: folder where the child creates a file named -id once it is ready")
	orphans := fs.Int("n", 1000, "orphans: how many orphans to leave to the supervisor")
	ignore := fs.Bool("ignore", false, "wait: ignore SIGINT and SIGTERM")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	var err error
	switch mode {
	case "write":
		err = writeLines(*id, *count, time.Duration(*seconds*float64(time.Second)))
	case "wait":
		err = waitForStop(*id, *marker, *ignore)
	case "orphans":
		if err = makeOrphans(*orphans); err == nil {
			err = waitForStop(*id, *marker, false)
		}
	case "exit":
		// A crash at start: one line per start, then exit 1.
		if err = appendStart(*count); err == nil {
			return 1
		}
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "child %s %s: %v\n", mode, *id, err)
		return 1
	}
	return 0
}

// writeLines writes 100-byte lines `<id> <seq> xxx...` to stdout in 100 kB
// writes until the deadline or a stop signal, then records how many it wrote:
// the reader of the supervisor's output compares the two counts.
func writeLines(id, countFile string, d time.Duration) error {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	head := len(id) + 1 + seqDigits + 1
	if id == "" || head >= lineLen-1 || countFile == "" {
		return fmt.Errorf("need a short -id and a -count file")
	}
	buf := make([]byte, lineLen*linesPerWrite)
	for i := range linesPerWrite {
		line := buf[i*lineLen : (i+1)*lineLen]
		copy(line, id)
		line[len(id)] = ' '
		line[head-1] = ' '
		for j := head; j < lineLen-1; j++ {
			line[j] = 'x'
		}
		line[lineLen-1] = '\n'
	}
	start := time.Now()
	deadline := start.Add(d)
	var lines int64
	var werr error
loop:
	for time.Now().Before(deadline) {
		select {
		case <-stop:
			break loop
		default:
		}
		for i := range int64(linesPerWrite) {
			putSeq(buf[int(i)*lineLen+len(id)+1:], lines+i)
		}
		n, err := os.Stdout.Write(buf)
		lines += int64(n / lineLen)
		if err != nil {
			werr = err
			break
		}
	}
	end := time.Now()
	tmp := countFile + ".tmp"
	body := fmt.Sprintf("%d %d %d\n", lines, start.UnixNano(), end.UnixNano())
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		return fmt.Errorf("record count: %w", err)
	}
	// Renamed into place so that the bench never reads half a count.
	if err := os.Rename(tmp, countFile); err != nil {
		return fmt.Errorf("record count: %w", err)
	}
	if werr != nil {
		return fmt.Errorf("write stdout after %d lines: %w", lines, werr)
	}
	return nil
}

// putSeq writes n as seqDigits zero-padded digits at the start of b.
func putSeq(b []byte, n int64) {
	for i := seqDigits - 1; i >= 0; i-- {
		b[i] = byte('0' + n%10)
		n /= 10
	}
}

// waitForStop runs until SIGINT or SIGTERM (or forever with ignore), after
// telling the bench it is ready by creating <marker>/<id>: the handler is set
// before the marker appears, so a signal sent after it is never missed.
func waitForStop(id, marker string, ignore bool) error {
	stop := make(chan os.Signal, 1)
	if ignore {
		signal.Ignore(os.Interrupt, syscall.SIGTERM)
	} else {
		signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	}
	if marker != "" {
		if id == "" {
			return fmt.Errorf("-marker needs an -id")
		}
		if err := os.WriteFile(filepath.Join(marker, id), nil, 0o644); err != nil {
			return fmt.Errorf("create marker: %w", err)
		}
	}
	if ignore {
		// A sleeping timer keeps the runtime from calling this a deadlock.
		for {
			time.Sleep(time.Hour)
		}
	}
	<-stop
	return nil
}

// makeOrphans leaves n processes to be reaped by whoever is PID 1 or the
// nearest subreaper: a shell forks a subshell that starts `sleep 0.05` in the
// background and exits at once, n times, so each sleep loses its parent and
// exits 50 ms later. It returns once all have been started.
func makeOrphans(n int) error {
	script := fmt.Sprintf("i=0; while [ $i -lt %d ]; do (sleep 0.05 &); i=$((i+1)); done", n)
	if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
		return fmt.Errorf("start %d orphans: %w: %s", n, err, out)
	}
	return nil
}

// appendStart appends the time of this start to file in one write.
func appendStart(file string) error {
	if file == "" {
		return fmt.Errorf("need a -count file")
	}
	f, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("record start: %w", err)
	}
	_, err = fmt.Fprintf(f, "%d\n", time.Now().UnixNano())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("record start: %w", err)
	}
	return nil
}
