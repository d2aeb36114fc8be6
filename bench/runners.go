package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A runner starts one supervisor over a run's children. LavaVisor and every
// peer get the same children, the same stop timeout and the same output file.
type runner interface {
	name() string
	// command writes the supervisor's config into the run's folder and returns
	// the command that starts it; its stdout and stderr are set by the caller.
	command(r *run) (*exec.Cmd, error)
	// childLogs are the files that receive the children's output.
	childLogs(r *run) []string
	// version is what the report prints for the program.
	version() string
}

// child is one supervised program: this binary re-executed with args.
type child struct {
	name string
	args []string
}

// run is one start of one supervisor: its own folder, children and output.
type run struct {
	dir         string
	tag         string // on every child's command line, and nowhere else
	self        string // the binary the children run
	children    []child
	stopTimeout time.Duration
	out         string // the supervisor's stdout and stderr
	restart     bool   // restart children that exit (crash loop); else leave them ended
}

func (r *run) path(name string) string { return filepath.Join(r.dir, name) }

// lavavisorRunner runs `lavavisor start` with one `command:` service per child.
// With logs, the children's lines go to <run>/logs/<child>.log (logs-dir) and
// LavaVisor's stderr to /dev/null; rotate makes it rotate them at 10 MiB and
// compress the rotated ones, all kept.
type lavavisorRunner struct {
	bin          string
	logs, rotate bool
}

func (l lavavisorRunner) name() string {
	switch {
	case l.rotate:
		return "LavaVisor, rotating 10MiB + gzip"
	case l.logs:
		return "LavaVisor, logs-dir"
	}
	return "LavaVisor"
}

func (l lavavisorRunner) command(r *run) (*exec.Cmd, error) {
	home := r.path("home")
	var b strings.Builder
	// No chain: a static version source that does not exist is fine for
	// command-only services, which have no release to follow.
	b.WriteString("node: file:///nonexistent.yml\n")
	fmt.Fprintf(&b, "stop-timeout: %s\n", r.stopTimeout)
	if l.logs {
		// No rotation during the run, as supervisord's stdout_logfile_maxbytes=0.
		size, files := "1TiB", 1
		if l.rotate {
			size, files = "10MiB", 100000
		}
		fmt.Fprintf(&b, "logs-dir: %s\nlog-max-size: %s\nlog-max-files: %d\n", strconv.Quote(r.path("logs")), size, files)
		// Nobody reads the terminal: only the files count, as supervisord's.
		r.out = os.DevNull
	}
	if r.restart {
		b.WriteString("restart: always\nservices:\n")
	} else {
		// never: LavaVisor ends by itself once every child has ended.
		b.WriteString("restart: never\nservices:\n")
	}
	for _, c := range r.children {
		fmt.Fprintf(&b, "  - name: %s\n    command: %s\n    args: [", c.name, strconv.Quote(r.self))
		for i, a := range c.args {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(strconv.Quote(a))
		}
		b.WriteString("]\n")
	}
	if err := os.MkdirAll(filepath.Join(home, ".lavavisor"), 0o755); err != nil {
		return nil, fmt.Errorf("lavavisor home: %w", err)
	}
	if err := os.WriteFile(filepath.Join(home, ".lavavisor", "config.yml"), []byte(b.String()), 0o644); err != nil {
		return nil, fmt.Errorf("lavavisor config: %w", err)
	}
	cmd := exec.Command(l.bin, "--directory", home, "start")
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	return cmd, nil
}

func (l lavavisorRunner) childLogs(r *run) []string {
	if !l.logs {
		return []string{r.out}
	}
	var logs []string
	for _, c := range r.children {
		logs = append(logs, filepath.Join(r.path("logs"), c.name+".log"))
	}
	return logs
}

// rotatedLogs are the files that log rotated away from it, oldest first, and
// whether one is still waiting for its compression.
func rotatedLogs(log string) (files []string, compressing bool) {
	base := strings.TrimSuffix(log, ".log")
	files, _ = filepath.Glob(base + "-*.log*")
	slices.Sort(files) // the names hold UTC times that sort as text
	for _, f := range files {
		compressing = compressing || !strings.HasSuffix(f, ".gz")
	}
	return files, compressing
}

func (l lavavisorRunner) version() string { return commandLine(l.bin, "version") }

// supervisordRunner runs `supervisord -n -c conf`, one program per child, each
// logging to its own file (stdout_logfile_maxbytes=0: no rotation), all in one
// group.
type supervisordRunner struct{ bin string }

func (s supervisordRunner) name() string { return "supervisord" }

func (s supervisordRunner) command(r *run) (*exec.Cmd, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "[supervisord]\nnodaemon=true\nlogfile=%s\nlogfile_maxbytes=0\npidfile=%s\nchildlogdir=%s\n",
		r.path("supervisord.log"), r.path("supervisord.pid"), r.dir)
	// A whole number of seconds is all stopwaitsecs takes; round up.
	wait := int((r.stopTimeout + time.Second - 1) / time.Second)
	// autorestart with startsecs=0: an exit is a normal end of a started
	// program, restarted whatever its code.
	autorestart := "false"
	if r.restart {
		autorestart = "true"
	}
	for _, c := range r.children {
		words := []string{shellQuote(r.self)}
		for _, a := range c.args {
			words = append(words, shellQuote(a))
		}
		fmt.Fprintf(&b, "\n[program:%s]\ncommand=%s\nautostart=true\nautorestart=%s\nstartsecs=0\nstartretries=0\n"+
			"stopsignal=TERM\nstopwaitsecs=%d\nstopasgroup=true\nkillasgroup=true\n"+
			"stdout_logfile=%s\nstdout_logfile_maxbytes=0\nstdout_logfile_backups=0\nredirect_stderr=true\n",
			c.name, strings.Join(words, " "), autorestart, wait, r.path(c.name+".log"))
	}
	// One group: supervisord stops the processes of a group together, but
	// stops groups (a program alone is one) one after another.
	var names []string
	for _, c := range r.children {
		names = append(names, c.name)
	}
	fmt.Fprintf(&b, "\n[group:bench]\nprograms=%s\n", strings.Join(names, ","))
	conf := r.path("supervisord.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		return nil, fmt.Errorf("supervisord config: %w", err)
	}
	return exec.Command(s.bin, "-n", "-c", conf), nil
}

func (s supervisordRunner) childLogs(r *run) []string {
	var logs []string
	for _, c := range r.children {
		logs = append(logs, r.path(c.name+".log"))
	}
	return logs
}

func (s supervisordRunner) version() string { return "supervisord " + commandLine(s.bin, "--version") }

// initRunner is tini or dumb-init over a shell script that starts every child
// in the background, in the shell's process group, and waits: how these
// init programs are used for several processes. They forward the signal to
// that group and have no stop timeout of their own.
type initRunner struct {
	label string
	bin   string
	args  []string // before `sh script`
}

func (i initRunner) name() string { return i.label }

func (i initRunner) command(r *run) (*exec.Cmd, error) {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	for _, c := range r.children {
		b.WriteString(shellQuote(r.self))
		for _, a := range c.args {
			b.WriteString(" " + shellQuote(a))
		}
		b.WriteString(" &\n")
	}
	b.WriteString("wait\n")
	script := r.path("spawn.sh")
	if err := os.WriteFile(script, []byte(b.String()), 0o755); err != nil {
		return nil, fmt.Errorf("%s script: %w", i.label, err)
	}
	return exec.Command(i.bin, append(append([]string{}, i.args...), "sh", script)...), nil
}

func (i initRunner) childLogs(r *run) []string { return []string{r.out} }

func (i initRunner) version() string { return commandLine(i.bin, "--version") }

// shellQuote quotes s for sh and for supervisord's shlex alike.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// commandLine is the first line a program prints (stdout or stderr), or "?".
func commandLine(bin string, args ...string) string {
	out, err := exec.Command(bin, args...).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if err != nil && line == "" {
		return "?"
	}
	return line
}
