// Command reliability writes docs/RELIABILITY.md: every guarantee of SPEC §2,
// §5 and §6 with the tests that prove it and their latest result.
//
//	go run ./bench/reliability                  runs go test -json -count=1 ./... and writes the report
//	go run ./bench/reliability saved.json       renders from a saved go test -json output
//	go run ./bench/reliability -save run.json   also keeps the raw output of the run
//	go run ./bench/reliability -sim 500         runs 500 sequences of the composed-fault
//	                                            simulation and writes its section only
//	go run ./bench/reliability -sim-from s.json renders that section from a saved run
//	go run ./bench/reliability -mutants 60      the mutation check: each of issue 10's bugs
//	                                            switched back on (internal/mutant), the
//	                                            sequences it took the simulation to catch it
//
// The guarantees and their tests are listed in bench/reliability/guarantees.txt.
// Failing tests do not make it fail: they are what the report is for. It exits
// 1 when it cannot produce the report.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

const testCommand = "go test -json -count=1 ./..."

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "reliability:", err)
		os.Exit(1)
	}
}

func run(args []string, log io.Writer) error {
	fs := flag.NewFlagSet("reliability", flag.ContinueOnError)
	fs.SetOutput(log)
	mapFile := fs.String("map", "bench/reliability/guarantees.txt", "the guarantees and their tests, relative to the module root")
	outFile := fs.String("out", "docs/RELIABILITY.md", "the report, relative to the module root")
	save := fs.String("save", "", "also write the raw go test -json output of the run to this file")
	sim := fs.Int("sim", 0, "run this many sequences of the composed-fault simulation and write its section of the report (the rest is kept)")
	simSeed := fs.Uint64("sim-seed", 1, "the seed of the first sequence")
	simParallel := fs.Int("sim-parallel", 3, "sequences run at once")
	simFrom := fs.String("sim-from", "", "render the simulation's section from this saved go test -json output")
	mutants := fs.Int("mutants", 0, "the mutation check: run the simulation with each of issue 10's bugs switched back on, up to this many sequences each, and write its section")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return fmt.Errorf("want at most one argument, a saved go test -json file; got %q", fs.Args())
	}
	root, module, err := findModule()
	if err != nil {
		return err
	}
	at := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(root, p)
	}
	if *mutants > 0 {
		return mutationReport(root, at(*outFile), *mutants, *simSeed, *simParallel, log)
	}
	if *sim > 0 || *simFrom != "" {
		return simulationReport(root, at(*outFile), *sim, *simSeed, *simParallel, *simFrom, *save, log)
	}
	mf, err := os.Open(at(*mapFile))
	if err != nil {
		return fmt.Errorf("open the guarantees: %w", err)
	}
	secs, err := parseGuarantees(mf, module)
	mf.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", *mapFile, err)
	}

	info := runInfo{Command: testCommand, MapFile: *mapFile, Go: goVersion(root), Machine: machine()}
	var res *results
	if fs.NArg() == 1 {
		path := fs.Arg(0)
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if res, err = readResults(f); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		info.Source = "read from " + path + "; machine and Go are the renderer's"
		info.Date = res.Last
	} else {
		start := time.Now()
		if res, err = runTests(root, at(*save), *save != "", log); err != nil {
			return err
		}
		info.Source = "this run"
		info.Date, info.Wall = start, time.Since(start)
	}
	rep := &report{Info: info, Module: module, Sections: secs, Results: res, Status: evaluate(secs, res, root, module)}
	var buf bytes.Buffer
	if err := rep.render(&buf); err != nil {
		return err
	}
	if old, err := os.ReadFile(at(*outFile)); err == nil {
		for _, m := range [][2]string{{simBegin, simEnd}, {mutBegin, mutEnd}} {
			if k := kept(string(old), m[0], m[1]); k != "" {
				buf.WriteString("\n" + k)
			}
		}
	}
	if err := writeAtomic(at(*outFile), buf.Bytes()); err != nil {
		return err
	}
	tally := map[string]int{}
	for _, s := range secs {
		for _, g := range s.Guarantees {
			tally[verdict(g, rep.Status[g])]++
		}
	}
	fmt.Fprintf(log, "wrote %s: guarantees %s\n", *outFile, tallyText(tally))
	return nil
}

// runTests runs the whole suite from root, showing progress on log, and reads
// its results. A failing test is a result, not an error.
func runTests(root, savePath string, save bool, log io.Writer) (*results, error) {
	fmt.Fprintf(log, "running %s in %s\n", testCommand, root)
	cmd := exec.Command("go", strings.Fields(testCommand)[1:]...)
	cmd.Dir = root
	cmd.Stderr = log // build errors that test2json does not capture
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var raw bytes.Buffer
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start go test: %w", err)
	}
	// Progress: one line per package as it ends.
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
		for sc.Scan() {
			var e event
			if json.Unmarshal(sc.Bytes(), &e) == nil && e.Test == "" && (e.Action == "pass" || e.Action == "fail" || e.Action == "skip") {
				fmt.Fprintf(log, "%-4s %s %.1fs\n", e.Action, e.Package, e.Elapsed)
			}
		}
		io.Copy(io.Discard, pr)
	}()
	_, copyErr := io.Copy(io.MultiWriter(&raw, pw), out)
	pw.Close()
	<-done
	waitErr := cmd.Wait()
	if copyErr != nil {
		return nil, fmt.Errorf("read go test output: %w", copyErr)
	}
	var exit *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &exit) {
		return nil, fmt.Errorf("go test: %w", waitErr)
	}
	if save {
		if err := writeAtomic(savePath, raw.Bytes()); err != nil {
			return nil, err
		}
	}
	return readResults(&raw)
}

// findModule walks up from the current folder to go.mod.
func findModule() (root, module string, err error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
					return dir, f[1], nil
				}
			}
			return "", "", fmt.Errorf("%s/go.mod has no module line", dir)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", "", fmt.Errorf("no go.mod in this folder or above: run from the repository")
		}
		dir = parent
	}
}

func goVersion(root string) string {
	cmd := exec.Command("go", "version")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return runtime.Version() + " (go version failed: " + err.Error() + ")"
	}
	return strings.TrimSpace(string(out))
}

// machine describes the host: name, kernel, CPU, cores and load at start
// (the machine may be shared, which stretches timings).
func machine() string {
	host, _ := os.Hostname()
	parts := []string{host}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		parts = append(parts, runtime.GOOS+" "+strings.TrimSpace(string(b))+" "+runtime.GOARCH)
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				parts = append(parts, strings.TrimSpace(v))
				break
			}
		}
	}
	parts = append(parts, fmt.Sprintf("%d cores", runtime.NumCPU()))
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			parts = append(parts, "load "+strings.Join(f[:3], " ")+" at start")
		}
	}
	return strings.Join(parts, ", ")
}

// writeAtomic replaces path with data: a temporary file beside it, then rename.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// simulationReport writes the simulation's section of the report.
func simulationReport(root, outFile string, n int, seed uint64, parallel int, from, save string, log io.Writer) error {
	var run *simRun
	if from != "" {
		f, err := os.Open(from)
		if err != nil {
			return err
		}
		defer f.Close()
		recs, err := readSimulation(f, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", from, err)
		}
		fi, _ := f.Stat()
		run = &simRun{Command: "(read from " + from + ")", Records: recs.records, Stray: recs.problems, Date: fi.ModTime()}
	} else {
		var err error
		if run, err = runSimulation(root, n, seed, parallel, save, log); err != nil {
			return err
		}
	}
	run.Machine, run.Go = machine(), goVersion(root)
	if len(run.Records) == 0 {
		return fmt.Errorf("no sequence reported (%s)", strings.Join(run.Stray, "; "))
	}
	old, err := os.ReadFile(outFile)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := writeAtomic(outFile, []byte(splice(string(old), renderSimulation(run), simBegin, simEnd))); err != nil {
		return err
	}
	failed := 0
	for _, r := range run.Records {
		if len(r.Violations) > 0 {
			failed++
		}
	}
	fmt.Fprintf(log, "wrote %s: %d sequences, %d with a violation\n", outFile, len(run.Records), failed)
	return nil
}
