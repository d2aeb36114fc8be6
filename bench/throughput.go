package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// quiet is how long output must stop growing, once every writer has ended,
// for a supervisor that does not exit by itself to count as drained.
const quiet = 300 * time.Millisecond

type tput struct {
	mbps                float64
	cpuPerGB            float64 // the supervisor's CPU seconds per GB delivered
	written, delivered  int64
	lost                int64
	malformed, disorder int64
}

// cpuProfileNote says where LavaVisor's CPU goes when it is above
// supervisord's: the profile of BenchmarkPipeline, as last read.
const cpuProfileNote = "LavaVisor's CPU s/GB is above supervisord's here. Where it goes: `go test -run '^$' -bench 'Pipeline/writers=4/stderr$' -benchtime 6000000x -cpuprofile cpu.prof ./supervisor/ && go tool pprof -top -cum supervisor.test cpu.prof` (2026-12-02, this machine): 86% of the pipeline's samples are system calls (the write to the file 73%, the pipe reads 11%), the per-line work 12% (finding lines and queueing them 6%, prefixing and copying 5%, the `lavavisor logs` ring 2%, the UTF-8 check 2%: 16% before it was made 5× faster). LavaVisor also writes 12% more bytes to stderr (the `w1 | ` prefix), and reads each pipe as soon as it holds anything: smaller reads, so more system calls per GB, than a slower reader. On this shared 2-core machine one process's CPU per GB moves by up to 2× between runs of the same build."

func (b *bench) throughput() (section, []goal) {
	s := section{
		title: "Log throughput to a file",
		method: fmt.Sprintf("Each child writes 100-byte lines (`<id> <seq> xxx…`) in 100 kB writes for %g s, then records how many it wrote. "+
			"The supervisor's output goes to a file: LavaVisor's stderr (`w1 | <line>`, NO_COLOR=1); supervisord's `stdout_logfile` per program "+
			"(`stdout_logfile_maxbytes=0`, `redirect_stderr=true`). MB/s = payload bytes of the lines found intact in the output / "+
			"(time the output last grew − the first writer's start); LavaVisor's prefix (12 more bytes a line here) is not counted. "+
			"Lost = written − found, per child. "+
			"One more child that only waits keeps every supervisor up once the writers have ended, so that its CPU time "+
			"(utime + stime in /proc/PID/stat, its children not counted) is read after the output has been drained: CPU s/GB. "+
			"On a shared machine, CPU per GB moves less than MB/s.", b.seconds),
	}
	return s, b.throughputTables(&s, b.runners("supervisord"), "", 2)
}

// logsDir is the throughput to log files: LavaVisor's logs-dir against
// supervisord's stdout_logfile, and the cost of rotating and compressing.
func (b *bench) logsDir() (section, []goal) {
	s := section{
		title: "Log throughput to log files (logs-dir)",
		method: fmt.Sprintf("As above (%g s of 100-byte lines, CPU read once the files are drained), but LavaVisor writes each child's lines, raw, "+
			"to `logs-dir` (`<logs-dir>/<child>.log`, `log-max-size: 1TiB`: no rotation during the run, as supervisord's `stdout_logfile_maxbytes=0`) "+
			"and its stderr goes to /dev/null (nobody reads it; LavaVisor then formats nothing for it); supervisord as above. "+
			"The rotation cost is a third runner, LavaVisor rotating at `log-max-size: 10MiB` with every rotated file gzip-compressed "+
			"and kept: its CPU is read once every rotated file is compressed, and its lines are counted across all the files.", b.seconds),
	}
	files, ok := b.lavavisor.(lavavisorRunner)
	if !ok {
		s.notes = append(s.notes, "LavaVisor's runner takes no logs-dir")
		return s, nil
	}
	rotating := files
	files.logs = true
	rotating.logs, rotating.rotate = true, true
	rs := []runner{files}
	if p, ok := b.peers["supervisord"]; ok {
		rs = append(rs, p)
	}
	rs = append(rs, rotating)
	return s, b.throughputTables(&s, rs, ", to logs-dir", 1)
}

// throughputTables runs rs (LavaVisor first) with 1 and 4 writers, adds a
// table of each to s and returns the goals: LavaVisor's MB/s at least
// minRatio× supervisord's, its CPU s/GB at most supervisord's, no line lost.
func (b *bench) throughputTables(s *section, rs []runner, what string, minRatio float64) []goal {
	var goals []goal
	lvName := rs[0].name()
	for _, n := range []int{1, 4} {
		label := "throughput" + what + ", " + children(n)
		samples, failures := rounds(b, label, rs, func(rn runner) (tput, error) { return b.throughputOnce(rn, n) },
			func(t tput) string {
				return fmt.Sprintf("%.0f MB/s, %.2f CPU s/GB, %d written, %d lost, %d malformed", t.mbps, t.cpuPerGB, t.written, t.lost, t.malformed)
			})
		mbpsOf := func(t tput) float64 { return t.mbps }
		cpuOf := func(t tput) float64 { return t.cpuPerGB }
		lv := values(samples[lvName], mbpsOf)
		t := table{header: []string{"children", "supervisor", "MB/s median (min–max)", "CPU s/GB", "lines written, median", "lines lost, all runs", "LavaVisor / peer"}}
		for _, rn := range rs {
			ss := samples[rn.name()]
			mbps := values(ss, mbpsOf)
			lost := sum(values(ss, func(t tput) float64 { return float64(t.lost) }))
			t.rows = append(t.rows, []string{strconv.Itoa(n), rn.name(), spread(mbps, 0), spread(values(ss, cpuOf), 2),
				spread(values(ss, func(t tput) float64 { return float64(t.written) }), 0), fmt.Sprintf("%.0f", lost), ratio(rn.name(), lv, mbps)})
			for i, x := range ss {
				if x.malformed > 0 || x.disorder > 0 {
					s.notes = append(s.notes, fmt.Sprintf("%s, %s, run %d: %d malformed lines, %d out of order", children(n), rn.name(), i+1, x.malformed, x.disorder))
				}
			}
		}
		s.tables = append(s.tables, t)
		s.notes = append(s.notes, failures...)
		if sv := samples["supervisord"]; len(sv) > 0 && len(lv) > 0 {
			r := median(lv) / median(values(sv, mbpsOf))
			goals = append(goals, goal{fmt.Sprintf("log throughput%s ≥ %g× supervisord, %s", what, minRatio, children(n)), fmt.Sprintf("%.2f×", r), r >= minRatio})
			lc, sc := median(values(samples[lvName], cpuOf)), median(values(sv, cpuOf))
			goals = append(goals, goal{fmt.Sprintf("CPU s/GB%s ≤ supervisord's, %s", what, children(n)), fmt.Sprintf("%.2f vs %.2f", lc, sc), lc <= sc})
			if lc > sc && !slices.Contains(s.notes, cpuProfileNote) {
				s.notes = append(s.notes, cpuProfileNote)
			}
		}
		for _, rn := range rs {
			if rn.name() != lvName && !strings.HasPrefix(rn.name(), "LavaVisor") {
				continue
			}
			if ss := samples[rn.name()]; len(ss) > 0 {
				lost := sum(values(ss, func(t tput) float64 { return float64(t.lost + t.malformed) }))
				goals = append(goals, goal{fmt.Sprintf("0 lines lost or damaged, %s, %s", rn.name(), children(n)), fmt.Sprintf("%.0f", lost), lost == 0})
			}
		}
	}
	return goals
}

func (b *bench) throughputOnce(rn runner, n int) (tput, error) {
	r, err := b.newRun(fmt.Sprintf("throughput%d", n), rn)
	if err != nil {
		return tput{}, err
	}
	var writers []string
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("w%d", i)
		writers = append(writers, name)
		r.children = append(r.children, child{name, childArgs("write", name, r.tag,
			"-seconds", strconv.FormatFloat(b.seconds, 'f', -1, 64), "-count", r.path("count-"+name))})
	}
	r.children = append(r.children, child{"idle", childArgs("wait", "idle", r.tag)})
	p, cleanup, err := b.start(rn, r)
	if err != nil {
		return tput{}, err
	}
	defer cleanup()
	logs := rn.childLogs(r)
	deadline := time.Now().Add(time.Duration(b.seconds*float64(time.Second)) + time.Minute)
	size, lastGrowth := int64(-1), time.Time{}
	for {
		if err := sleepCtx(b.ctx, 10*time.Millisecond); err != nil {
			return tput{}, err
		}
		now := time.Now()
		if sz := totalSize(logs); sz != size {
			size, lastGrowth = sz, now
		}
		if !p.running() {
			return tput{}, fmt.Errorf("supervisor exited (%s) during the run", p.exitText())
		}
		if countsDone(r, writers) && now.Sub(lastGrowth) >= quiet {
			break
		}
		if now.After(deadline) {
			return tput{}, fmt.Errorf("children or output not done after %s", time.Since(p.started).Round(time.Second))
		}
	}
	// Rotated files are compressed in the background: their cost counts.
	for {
		compressing := false
		for _, l := range logs {
			_, c := rotatedLogs(l)
			compressing = compressing || c
		}
		if !compressing {
			break
		}
		if time.Now().After(deadline) {
			return tput{}, fmt.Errorf("rotated files not compressed after %s", time.Since(p.started).Round(time.Second))
		}
		if err := sleepCtx(b.ctx, 10*time.Millisecond); err != nil {
			return tput{}, err
		}
	}
	cpu, err := cpuSeconds(p.cmd.Process.Pid)
	if err != nil {
		return tput{}, err
	}
	res := tput{}
	written := map[string]int64{}
	var first time.Time
	for _, name := range writers {
		lines, start, err := readCount(r.path("count-" + name))
		if err != nil {
			return tput{}, err
		}
		written[name] = lines
		res.written += lines
		if first.IsZero() || start.Before(first) {
			first = start
		}
	}
	t := newTally()
	for _, l := range logs {
		rotated, _ := rotatedLogs(l)
		for _, f := range append(rotated, l) {
			if _, err := os.Stat(f); errors.Is(err, fs.ErrNotExist) && f == l && rn.name() != "supervisord" {
				continue // LavaVisor opens a log file at its first line: the idle child has none
			}
			if err := t.file(f); err != nil {
				return tput{}, err
			}
			// Gigabytes per run: free the disk before the next one.
			os.Remove(f)
		}
	}
	for name, w := range written {
		var got int64
		if c := t.children[name]; c != nil {
			got = c.lines
		}
		res.delivered += got
		if got < w {
			res.lost += w - got
		}
	}
	res.malformed, res.disorder = t.malformed, t.disorder
	res.mbps = float64(res.delivered*lineLen) / lastGrowth.Sub(first).Seconds() / 1e6
	if res.delivered > 0 {
		res.cpuPerGB = cpu / (float64(res.delivered*lineLen) / 1e9)
	}
	return res, nil
}

func totalSize(paths []string) int64 {
	var n int64
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// countsDone tells whether every writer has recorded its count: has ended.
func countsDone(r *run, writers []string) bool {
	for _, name := range writers {
		if _, err := os.Stat(r.path("count-" + name)); err != nil {
			return false
		}
	}
	return true
}

// readCount reads a writer's `lines start_ns end_ns`.
func readCount(path string) (int64, time.Time, error) {
	body, err := os.ReadFile(path)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("writer count: %w", err)
	}
	f := strings.Fields(string(body))
	if len(f) != 3 {
		return 0, time.Time{}, fmt.Errorf("writer count %s: want 3 fields, got %q", path, body)
	}
	lines, err1 := strconv.ParseInt(f[0], 10, 64)
	start, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, time.Time{}, fmt.Errorf("writer count %s: bad numbers %q", path, body)
	}
	return lines, time.Unix(0, start), nil
}

// children is "1 child", "4 children".
func children(n int) string {
	if n == 1 {
		return "1 child"
	}
	return strconv.Itoa(n) + " children"
}
