// Command fakelavap stands in for a lavap release in tests and in the demo.
//
// Built with -ldflags "-X main.version=6.2.5" it prints that number for
// `version` (-X main.noVersion=yes: no version command, as old releases).
// Run with any other arguments it behaves like `lavap rpcprovider`: it logs to
// stderr, stops cleanly on SIGINT (exit 0) and dies on SIGTERM (exit 143), as
// real lavap does (fixtures/lavap_signal_tests.txt). Its environment tunes it:
//
//	FAKE_RECORD=file     append "start|signal|exit <pid> ..." lines to file
//	FAKE_TIMELINE=file   append "<unix-nanos> start|signal|exit <pid> <version>"
//	                     lines to file: start first thing in a run, signal as
//	                     any trapped signal arrives, exit just before exiting
//	FAKE_IGNORE=1        ignore SIGINT and SIGTERM
//	FAKE_EXIT=code       exit with code at once (after FAKE_DELAY)
//	FAKE_DELAY=dur       wait before FAKE_EXIT
//	FAKE_ORPHANS=n       start n children that outlive it, then exit 0
//	FAKE_LINE=n          print one stderr line of n bytes
//	FAKE_NONL=text       print text without a newline, then exit 0
//	FAKE_SPAM=n          print n numbered 100-byte stdout lines, then run
//	FAKE_STDIN=1         read one line of stdin and record its sha256 prefix
//	FAKE_TICK=dur        log a line every dur while running
//
// Health knobs (SPEC §7), so that one release can serve and another not:
//
//	FAKE_HEALTH_ADDR=127.0.0.1:PORT  listen there (before the start is
//	                     recorded) and answer GET /health; no address, no
//	                     listener. A port still held is retried for 3s, then
//	                     the fake exits 1; SO_REUSEADDR (Go's default) lets a
//	                     restarted fake bind at once after the old one exited
//	FAKE_HEALTH=6.2.6=fail,*=ok   the mode for this release: the first
//	                     VERSION=MODE whose VERSION (a path.Match pattern:
//	                     6.2.6, 6.2.*, *) matches main.version; ok when none
//	                     does. Modes:
//	  ok                 200
//	  fail               503
//	  slow               200 after 10s (a health timeout)
//	  after=DUR          503 until DUR after the start, then 200
//	  flap=DUR           200 for DUR, 503 for DUR, and so on from the start
//	  none               no listener at all (a connection is refused)
//	                     A bad FAKE_HEALTH makes the fake exit 2.
package main

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var (
	version   = "0.0.0"
	noVersion = ""
)

func main() {
	started := time.Now()
	args := os.Args[1:]
	if os.Getenv("FAKE_ORPHAN_CHILD") != "" {
		time.Sleep(50 * time.Millisecond)
		return
	}
	if len(args) > 0 && args[0] == "version" {
		if noVersion != "" {
			fmt.Fprintln(os.Stderr, `Error: unknown command "version" for "lavap"`)
			os.Exit(1)
		}
		fmt.Println(version)
		return
	}
	timeline("start")
	// Signals are caught before the start is recorded: a test that signals
	// as soon as it sees the start must not kill the fake with SIGUSR1's
	// default action.
	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGHUP)
	if addr := os.Getenv("FAKE_HEALTH_ADDR"); addr != "" {
		mode, err := pickHealth(os.Getenv("FAKE_HEALTH"), version)
		if err != nil {
			fmt.Fprintf(os.Stderr, "FTL fake lavap: %v\n", err)
			os.Exit(2)
		}
		if err := serveHealth(addr, mode, started); err != nil {
			fmt.Fprintf(os.Stderr, "FTL fake lavap: %v\n", err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "INF fake lavap %s health on %s: %s\n", version, addr, mode)
	}
	record("start", strings.Join(args, " "))
	fmt.Fprintf(os.Stderr, "INF fake lavap %s started pid=%d args=%q\n", version, os.Getpid(), args)

	if os.Getenv("FAKE_STDIN") != "" {
		line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		sum := sha256.Sum256([]byte(strings.TrimSuffix(line, "\n")))
		record("stdin", fmt.Sprintf("%x", sum[:8]))
	}
	if n, _ := strconv.Atoi(os.Getenv("FAKE_LINE")); n > 0 {
		b := make([]byte, n+1)
		for i := range n {
			b[i] = 'a' + byte(i%26)
		}
		b[n] = '\n'
		os.Stderr.Write(b)
	}
	if n, _ := strconv.Atoi(os.Getenv("FAKE_SPAM")); n > 0 {
		w := bufio.NewWriterSize(os.Stdout, 100*1000)
		for i := range n {
			fmt.Fprintf(w, "%010d %088s\n", i, "x")
		}
		w.Flush()
	}
	if n, _ := strconv.Atoi(os.Getenv("FAKE_ORPHANS")); n > 0 {
		for range n {
			c := exec.Command(os.Args[0])
			c.Env = append(os.Environ(), "FAKE_ORPHAN_CHILD=1")
			if err := c.Start(); err != nil {
				fmt.Fprintln(os.Stderr, "orphan:", err)
				os.Exit(1)
			}
		}
		record("exit", "0")
		timeline("exit")
		os.Exit(0)
	}
	if s, ok := os.LookupEnv("FAKE_NONL"); ok {
		fmt.Fprint(os.Stderr, s)
		timeline("exit")
		os.Exit(0)
	}
	if s, ok := os.LookupEnv("FAKE_EXIT"); ok {
		if d, err := time.ParseDuration(os.Getenv("FAKE_DELAY")); err == nil {
			time.Sleep(d)
		}
		code, _ := strconv.Atoi(s)
		record("exit", s)
		fmt.Fprintf(os.Stderr, "FTL fake lavap exiting with %d\n", code)
		timeline("exit")
		os.Exit(code)
	}
	var tick <-chan time.Time
	if d, err := time.ParseDuration(os.Getenv("FAKE_TICK")); err == nil && d > 0 {
		tick = time.Tick(d)
	}
	ignore := os.Getenv("FAKE_IGNORE") != ""
	for {
		select {
		case <-tick:
			fmt.Fprintf(os.Stderr, "INF fake lavap %s serving\n", version)
		case s := <-sigc:
			timeline("signal")
			sig := s.(syscall.Signal)
			record("signal", strings.TrimPrefix(unix(sig), "SIG"))
			if ignore || sig == syscall.SIGUSR1 || sig == syscall.SIGUSR2 || sig == syscall.SIGHUP {
				continue
			}
			if sig == syscall.SIGTERM {
				record("exit", "143")
				timeline("exit")
				os.Exit(143) // real lavap does not trap SIGTERM
			}
			fmt.Fprintln(os.Stderr, "INF Provider Server signalChan")
			record("exit", "0")
			timeline("exit")
			os.Exit(0)
		}
	}
}

func unix(s syscall.Signal) string {
	switch s {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGUSR1:
		return "SIGUSR1"
	case syscall.SIGUSR2:
		return "SIGUSR2"
	case syscall.SIGHUP:
		return "SIGHUP"
	}
	return s.String()
}

// record appends one line in a single write, so concurrent fakes never mix lines.
func record(event, detail string) {
	path := os.Getenv("FAKE_RECORD")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %d %s %s\n", event, os.Getpid(), version, detail)
}

// timeline appends one timestamped line in a single write, for the upgrade
// benchmark; it is a separate file so FAKE_RECORD's format stays untouched.
func timeline(event string) {
	path := os.Getenv("FAKE_TIMELINE")
	if path == "" {
		return
	}
	now := time.Now().UnixNano()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%d %s %d %s\n", now, event, os.Getpid(), version)
}
