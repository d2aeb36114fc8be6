package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a started supervisor. done is closed once it has been waited for;
// exited is when the wait returned.
type proc struct {
	cmd     *exec.Cmd
	started time.Time
	done    chan struct{}
	exited  time.Time
	err     error
}

// launch starts cmd with its output to out, in its own process group (a
// Ctrl-C on the bench reaches the bench only, which then cleans up) and with
// a parent-death SIGKILL, so that a killed bench leaves no supervisor behind.
func launch(cmd *exec.Cmd, out *os.File) (*proc, error) {
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Pdeathsig follows the thread that forks: keep the fork on one thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p := &proc{cmd: cmd, done: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(cmd.Path), err)
	}
	go func() {
		p.err = cmd.Wait()
		p.exited = time.Now()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// waitFor waits until p has exited, d has passed or ctx is done; it tells
// whether p has exited.
func (p *proc) waitFor(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// exitText is how p ended: "0", "143", "signal 9".
func (p *proc) exitText() string {
	st := p.cmd.ProcessState
	if st == nil {
		return "?"
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "signal " + strconv.Itoa(int(ws.Signal()))
	}
	return strconv.Itoa(st.ExitCode())
}

// kill SIGKILLs p's process group and waits for p.
func (p *proc) kill() {
	if p.running() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-p.done
}

// tagged lists the live processes (zombies left out) whose command line holds
// tag, this process excepted.
func tagged(tag string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(tag)) {
			continue
		}
		if state(pid) == 'Z' {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// state is the one-letter state of pid from /proc/PID/stat, 0 if unknown.
func state(pid int) byte {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name in parentheses may hold spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return 0
	}
	return stat[i+2]
}

// killTagged SIGKILLs every process that tagged finds, until none is left.
func killTagged(tag string) error {
	if len(tag) < 8 {
		// A short tag would match processes that are not ours.
		return fmt.Errorf("refusing to kill by the tag %q", tag)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := tagged(tag)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes still alive after SIGKILL: %v", pids)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// cpuSeconds is the user and system time pid has used itself (its children
// not counted), from /proc/PID/stat.
func cpuSeconds(pid int) (float64, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read stat of %d: %w", pid, err)
	}
	i := bytes.LastIndexByte(stat, ')')
	f := strings.Fields(string(stat[i+1:]))
	// Fields 14 and 15 of stat (utime, stime); f starts at field 3.
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad times in /proc/%d/stat", pid)
	}
	// USER_HZ is 100 on every Linux that Go supports.
	return float64(ut+st) / 100, nil
}

// memKB reads the resident set of pid, in kB, from /proc/PID/status: the
// whole (VmRSS) and its anonymous (heap, stacks) and file-backed (mapped
// binary) parts.
func memKB(pid int) (rss, anon, file int64, err error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, fmt.Errorf("read status of %d: %w", pid, err)
	}
	found := 0
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &rss
		case "RssAnon":
			dst = &anon
		case "RssFile":
			dst = &file
		default:
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		if *dst, err = strconv.ParseInt(f[0], 10, 64); err != nil {
			return 0, 0, 0, fmt.Errorf("/proc/%d/status %s: %w", pid, k, err)
		}
		found++
	}
	if found != 3 {
		return 0, 0, 0, fmt.Errorf("no VmRSS, RssAnon and RssFile in /proc/%d/status", pid)
	}
	return rss, anon, file, nil
}

// waitFiles polls dir every millisecond until it holds n entries and returns
// when that was seen; p ending first, ctx or the timeout is an error.
func waitFiles(ctx context.Context, p *proc, dir string, n int, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		entries, err := os.ReadDir(dir)
		now := time.Now()
		if err == nil && len(entries) >= n {
			return now, nil
		}
		switch {
		case ctx.Err() != nil:
			return now, ctx.Err()
		case !p.running():
			return now, fmt.Errorf("supervisor exited (%s) with %d of %d children started", p.exitText(), len(entries), n)
		case now.After(deadline):
			return now, fmt.Errorf("only %d of %d children started after %s", len(entries), n, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// sleepCtx sleeps for d unless ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
