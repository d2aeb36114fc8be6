package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The switches of the composed-fault simulation (simulation_test.go): a
// release server whose answers can be broken, a home whose disk can be
// filled, a system-path link whose folder can be taken away, and a view of
// LavaVisor's children read from /proc.

// Release-server modes.
const (
	serveGood   = "good"
	serve404    = "404"
	serveBadSum = "badsum"
	serveSlow   = "slow"
)

// simCrasher is the release that crashes at start: a script that records its
// start in the service's timeline (FAKE_TIMELINE, as the fake lavap does) and
// exits 1 soon after (or once FAKE_CRASH_GATE exists), as a lavap that
// cannot load its config.
const simCrasher = "6.3.0"

func crasherScript(version string) []byte {
	return []byte("#!/bin/sh\n[ \"$1\" = version ] && { echo " + version + "; exit 0; }\n" +
		"[ -n \"$FAKE_TIMELINE\" ] && echo \"$(date +%s%N) start $$ " + version + "\" >> \"$FAKE_TIMELINE\"\n" +
		"[ -n \"$FAKE_RECORD\" ] && echo \"start $$ " + version + " crasher\" >> \"$FAKE_RECORD\"\n" +
		// With FAKE_CRASH_GATE, it lives until that file exists (for 250 ms
		// at most): the simulation fills the disk, then opens the gate, so
		// that the rollback meets the full disk.
		"if [ -n \"$FAKE_CRASH_GATE\" ]; then i=0; while [ ! -e \"$FAKE_CRASH_GATE\" ] && [ $i -lt 25 ]; do sleep 0.01; i=$((i+1)); done; else sleep 0.05; fi\n" +
		"echo 'FTL could not load config file' >&2\n" +
		"[ -n \"$FAKE_TIMELINE\" ] && echo \"$(date +%s%N) exit $$ " + version + "\" >> \"$FAKE_TIMELINE\"\nexit 1\n")
}

// simServer serves the fake releases as GitHub assets. Its mode applies to
// every release; every request is logged with the mode that answered it.
type simServer struct {
	*httptest.Server
	start time.Time

	mu    sync.Mutex
	mode  string
	delay time.Duration // serveSlow: before a binary
	log   []string
}

func newSimServer(t *testing.T, start time.Time) *simServer {
	s := &simServer{start: start, mode: serveGood}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *simServer) set(mode string, delay time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode, s.delay = mode, delay
}

func (s *simServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

func (s *simServer) asset(version string) []byte {
	if version == simCrasher {
		return crasherScript(version)
	}
	b, err := os.ReadFile(filepath.Join(fakeBuilds, version, "lavap"))
	if err != nil {
		return nil
	}
	return b
}

func (s *simServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	mode, delay := s.mode, s.delay
	s.mu.Unlock()
	status := http.StatusOK
	defer func() {
		s.mu.Lock()
		s.log = append(s.log, fmt.Sprintf("%7.3fs %s %s -> %d", time.Since(s.start).Seconds(), mode, r.URL.Path, status))
		s.mu.Unlock()
	}()
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if len(parts) != 2 {
		status = http.StatusNotFound
		http.NotFound(w, r)
		return
	}
	version := strings.TrimPrefix(parts[0], "v")
	b := s.asset(version)
	name := fmt.Sprintf("lavap-v%s-%s-%s", version, runtime.GOOS, runtime.GOARCH)
	switch {
	case b == nil || mode == serve404:
		status = http.StatusNotFound
		http.NotFound(w, r)
	case parts[1] == "sha256sum.txt":
		sum := sha256.Sum256(b)
		if mode == serveBadSum {
			sum[0] ^= 0xff
		}
		fmt.Fprintf(w, "%x  lavap-v%s-darwin-arm64\n%x  %s\n", sha256.Sum256([]byte("other")), version, sum, name)
	case parts[1] == name:
		if mode == serveSlow {
			// Half at once, the rest after the delay: a download in
			// progress has a partial file on disk.
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			w.Write(b[:len(b)/2])
			w.(http.Flusher).Flush()
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				status = 499 // the client went away
				return
			}
			w.Write(b[len(b)/2:])
			return
		}
		w.Write(b)
	default:
		status = http.StatusNotFound
		http.NotFound(w, r)
	}
}

// simDisk is the home's .lavavisor on its own small tmpfs, so that it can be
// filled (ENOSPC) and freed again. mounted is false when tmpfs could not be
// mounted (not root, no CAP_SYS_ADMIN): the disk fault is then not run.
type simDisk struct {
	dir     string
	mounted bool
	filler  string
}

func newSimDisk(t *testing.T, dir string) *simDisk {
	d := &simDisk{dir: dir, filler: filepath.Join(dir, "zz-filler")}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		return d
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=24m,mode=0755"); err != nil {
		t.Logf("tmpfs not mounted (%v): no ENOSPC fault", err)
		return d
	}
	d.mounted = true
	// After lavavisor is killed (cleanups run last first) and before the home
	// is removed.
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return d
}

// fill takes every free byte of the tmpfs.
func (d *simDisk) fill() error {
	if !d.mounted {
		return errors.New("no tmpfs")
	}
	f, err := os.OpenFile(d.filler, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		var st syscall.Statfs_t
		if err := syscall.Statfs(d.dir, &st); err != nil {
			return err
		}
		free := int64(st.Bavail) * int64(st.Bsize)
		if free <= 0 {
			return nil
		}
		off, _ := f.Seek(0, 2)
		if err := syscall.Fallocate(int(f.Fd()), 0, off, free); err == nil {
			continue
		}
		// Not supported, or a race with a writer: fill by writing.
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return err
		}
	}
}

func (d *simDisk) free() error {
	if err := os.Remove(d.filler); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// child is one process whose parent is LavaVisor, as /proc shows it.
type child struct {
	pid     int
	exe     string
	service string // from FAKE_RECORD in its environment; "" when not a service
	state   byte
}

func (c child) String() string { return fmt.Sprintf("%s pid %d exe %s", c.service, c.pid, c.exe) }

// childrenOf walks /proc for the processes whose parent is pid.
func simChildrenOf(pid int) []child {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []child
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(b[i+1:]))
		if len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		if ppid != pid || fields[0] == "Z" {
			continue
		}
		cpid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		c := child{pid: cpid, state: fields[0][0]}
		c.exe, _ = os.Readlink(fmt.Sprintf("/proc/%d/exe", cpid))
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", cpid))
		for _, kv := range bytes.Split(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, []byte("FAKE_RECORD=")); ok {
				c.service = strings.TrimSuffix(filepath.Base(string(v)), ".rec")
			}
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pid < out[j].pid })
	return out
}

// processesWithEnv lists live processes whose environment holds marker: the
// services (and their shells) of one simulated home, whoever their parent.
func processesWithEnv(marker string) []int {
	envs, _ := filepath.Glob("/proc/[0-9]*/environ")
	var out []int
	for _, f := range envs {
		b, err := os.ReadFile(f)
		if err != nil || !bytes.Contains(b, []byte(marker)) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		if pid != os.Getpid() && alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}
