package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The composed-fault simulation (issue 11, SPEC §6.8): random, seeded
// sequences of events against real `lavavisor start` processes, with the
// five invariants of §6.8 checked from outside after each sequence: the
// children of LavaVisor in /proc and their /proc/<pid>/exe, `readlink
// current`, the system-path link, the fake lavap timelines, the release
// server's request log and the files of the home; never `status`.
//
//	LAVAVISOR_SIM_SEQUENCES  sequences to run (default 3; 0 skips)
//	LAVAVISOR_SIM_SEED       seed of the first sequence; sequence i runs seed+i,
//	                         so LAVAVISOR_SIM_SEED=S LAVAVISOR_SIM_SEQUENCES=1
//	                         replays the events of sequence S (not the machine's timing)
//
// Each sequence logs one `SIMSEQ {json}` line, and the test one `SIMSUMMARY
// {json}` line: bench/reliability -sim reads them into docs/RELIABILITY.md.
// The sequences run in parallel (go test -parallel).

// simKinds are the event kinds, in the order of the report.
var simKinds = []string{
	"chain-up", "chain-down", "chain-hostile", "chain-flap",
	"server-404", "server-badsum", "server-slow", "server-good",
	"hup-add", "hup-remove", "hup-env", "hup-pin",
	"svc-crash", "svc-end", "svc-ignore",
	"enospc", "link-unwritable",
	"kill-restart", "term-restart",
}

// notFaults are the ordinary events: every other kind is a fault.
var notFaults = map[string]bool{"chain-up": true, "chain-down": true, "server-good": true}

const (
	simPoll      = 150 * time.Millisecond
	simMinUptime = 300 * time.Millisecond
	// Generous: a loaded 2-core machine running other builds must not fail a
	// sequence that converges late but right.
	simConverge = 15 * time.Second
	simStop     = 30 * time.Second
)

var simGood = []string{"6.2.5", "6.2.6", "6.2.7"}

// simSvc is one service of the simulated config.yml.
type simSvc struct {
	Name        string        `json:"name"`
	Restart     string        `json:"restart,omitempty"` // "" (always) or never
	Ignore      bool          `json:"ignore,omitempty"`  // ignores SIGINT and SIGTERM
	StopTimeout time.Duration `json:"stop_timeout,omitempty"`
	Gen         int           `json:"gen,omitempty"` // FAKE_GEN: a changed env
}

type simConfig struct {
	Pin      string   `json:"pin,omitempty"`
	Rolling  bool     `json:"rolling"`
	Services []simSvc `json:"services"`
}

func (c simConfig) has(name string) bool {
	return slices.ContainsFunc(c.Services, func(s simSvc) bool { return s.Name == name })
}

func (c simConfig) clone() simConfig {
	c.Services = slices.Clone(c.Services)
	return c
}

// simStep is one scheduled action. Kind is one of simKinds for an event, or
// "end-..." / "flap-set" for the parts of one.
type simStep struct {
	At     time.Duration `json:"at"`
	Kind   string        `json:"kind"`
	Arg    string        `json:"arg,omitempty"`
	Until  time.Duration `json:"until,omitempty"` // end of the fault's window; 0 for a point event
	Raw    string        `json:"-"`               // chain: the versions file body
	Config *simConfig    `json:"-"`               // hup: the new config
}

func (s simStep) String() string {
	out := fmt.Sprintf("%6dms %s", s.At.Milliseconds(), s.Kind)
	if s.Arg != "" {
		out += " " + s.Arg
	}
	if s.Until > 0 {
		out += fmt.Sprintf(" (until %dms)", s.Until.Milliseconds())
	}
	return out
}

// simSequence is everything a seed decides.
type simSequence struct {
	Seed        uint64
	Config      simConfig // at start
	Placed626   bool      // 6.2.6 placed by hand, not downloaded
	Steps       []simStep // sorted by At
	LinkPersist bool      // the link's folder stays missing after the faults are cleared
	FinalMin    string
	FinalTarget string
	Overlaps    int // pairs of faults whose windows overlap
}

func (q simSequence) kinds() map[string]int {
	m := map[string]int{}
	for _, s := range q.Steps {
		if slices.Contains(simKinds, s.Kind) {
			m[s.Kind]++
		}
	}
	for _, s := range q.Config.Services {
		if s.Ignore {
			m["svc-ignore"]++
		}
	}
	return m
}

func versionsBody(min, target string) string {
	return fmt.Sprintf("provider_min: %s\nprovider_target: %s\nconsumer_min: %s\nconsumer_target: %s\n", min, target, min, target)
}

var simHostile = []string{"../../x", "1.2", "06.2.5", `"9.9.9; rm -rf /"`, "99999.1.1", "6.2.7-rc1", "\"\""}

// genSequence draws a sequence from its seed. The trigger, a raised target,
// comes first; the other events land in the 2.5 s that follow, which is when
// the download, the rolling restart and its probations happen; redrawn until
// at least two faults overlap.
func genSequence(seed uint64) simSequence {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	ms := func(lo, hi int) time.Duration { return time.Duration(lo+rng.IntN(hi-lo+1)) * time.Millisecond }
	for {
		q := simSequence{Seed: seed, Placed626: rng.IntN(3) == 0}
		cfg := simConfig{Rolling: rng.IntN(5) != 0}
		for _, name := range []string{"p1", "p2"} {
			s := simSvc{Name: name}
			if rng.IntN(3) == 0 {
				s.Ignore, s.StopTimeout = true, ms(1200, 2000)
			}
			cfg.Services = append(cfg.Services, s)
		}
		if rng.IntN(3) != 0 {
			cfg.Services = append(cfg.Services, simSvc{Name: "e1", Restart: "never"})
		}
		q.Config = cfg.clone()

		min, target := "6.2.5", "6.2.5"
		var extra []simStep // faults placed relative to an event
		higher := func(v string) []string {
			var out []string
			for _, c := range append(slices.Clone(simGood), simCrasher) {
				if compareVersions(c, v) > 0 {
					out = append(out, c)
				}
			}
			return out
		}
		pickMin := func(t string) string {
			if rng.IntN(3) == 0 {
				return t
			}
			return "6.2.5"
		}
		chain := func(at time.Duration, kind string, up bool) simStep {
			var cands []string
			if up {
				cands = higher(target)
				if len(cands) == 0 {
					cands = []string{"6.2.7", simCrasher}
				}
			} else {
				for _, c := range simGood {
					if compareVersions(c, target) < 0 {
						cands = append(cands, c)
					}
				}
				if len(cands) == 0 {
					cands = []string{"6.2.6"}
				}
			}
			// Mostly the next release up: a crashing one now and then.
			t := cands[0]
			switch r := rng.IntN(6); {
			case r < 2:
				t = cands[rng.IntN(len(cands))]
			case r == 2 && up:
				t = simCrasher
			}
			min, target = pickMin(t), t
			if t == simCrasher && rng.IntN(3) == 0 {
				// The disk fills while the crashing release is on probation:
				// its rollback cannot be journaled.
				d := ms(150, 500)
				extra = append(extra, simStep{At: at + d, Kind: "enospc", Arg: "during the rollback", Until: at + d + ms(500, 1500)})
			}
			return simStep{At: at, Kind: kind, Arg: min + ".." + target, Raw: versionsBody(min, target)}
		}

		var steps []simStep
		at := time.Duration(0)
		if rng.IntN(5) != 0 {
			steps = append(steps, chain(0, "chain-up", true))
		}
		n := 4 + rng.IntN(4)
		times := make([]time.Duration, n)
		for i := range times {
			times[i] = ms(0, 2500)
		}
		slices.Sort(times)
		serverBad := false
		for _, at = range times {
			kind := simKinds[rng.IntN(len(simKinds))]
			switch kind {
			case "svc-ignore": // a property of the config at start
				kind = "hup-env"
			case "svc-end":
				if !cfg.has("e1") {
					kind = "hup-add"
				}
			case "server-good":
				if !serverBad {
					kind = "server-slow"
				}
			}
			st := simStep{At: at, Kind: kind}
			switch kind {
			case "chain-up":
				st = chain(at, kind, true)
			case "chain-down":
				st = chain(at, kind, false)
			case "chain-hostile":
				h := simHostile[rng.IntN(len(simHostile))]
				if rng.IntN(4) == 0 {
					st.Arg, st.Raw = "min above target", versionsBody("6.2.7", "6.2.6")
				} else {
					st.Arg, st.Raw = "target "+h, versionsBody(min, h)
				}
			case "chain-flap":
				// Two answers alternating, as from load-balanced nodes.
				a := versionsBody(min, target)
				other := chain(at, kind, rng.IntN(2) == 0)
				st = other
				k := 3 + rng.IntN(3)
				st.Arg = fmt.Sprintf("%s x%d", other.Arg, k)
				t := at
				for i := 1; i < k; i++ {
					t += ms(60, 150)
					body := other.Raw
					if i%2 == 1 {
						body = a
					}
					steps = append(steps, simStep{At: t, Kind: "flap-set", Raw: body})
				}
				if k%2 == 0 { // ended on the first answer
					var m1, t1 string
					fmt.Sscanf(strings.ReplaceAll(a, "\n", " "), "provider_min: %s provider_target: %s", &m1, &t1)
					min, target = m1, t1
				}
				st.Until = t
			case "server-404", "server-badsum", "server-slow":
				st.Arg = strings.TrimPrefix(kind, "server-")
				if kind == "server-slow" {
					st.Arg = fmt.Sprintf("slow %dms", ms(600, 1500).Milliseconds())
				}
				serverBad = true
			case "server-good":
				serverBad = false
			case "hup-add":
				var name string
				for _, c := range []string{"e1", "p3", "p4"} {
					if !cfg.has(c) {
						name = c
						break
					}
				}
				if name == "" {
					kind, st.Kind = "hup-env", "hup-env"
				} else {
					s := simSvc{Name: name}
					if name == "e1" {
						s.Restart = "never"
					}
					cfg.Services = append(cfg.Services, s)
					st.Arg = name
				}
			case "hup-remove":
				var cands []string
				for _, s := range cfg.Services {
					if s.Name != "p1" {
						cands = append(cands, s.Name)
					}
				}
				if len(cands) == 0 {
					kind, st.Kind = "hup-env", "hup-env"
				} else {
					name := cands[rng.IntN(len(cands))]
					cfg.Services = slices.DeleteFunc(cfg.Services, func(s simSvc) bool { return s.Name == name })
					st.Arg = name
				}
			case "hup-pin":
				pins := []string{"", "6.2.5", "6.2.6", "6.2.7"}
				cfg.Pin = pins[rng.IntN(len(pins))]
				st.Arg = "pin " + cfg.Pin
				if cfg.Pin == "" {
					st.Arg = "unpin"
				}
			case "svc-crash":
				var cands []string
				for _, s := range cfg.Services {
					if s.Restart == "" {
						cands = append(cands, s.Name)
					}
				}
				st.Arg = cands[rng.IntN(len(cands))]
			case "svc-end":
				st.Arg = "e1"
			case "enospc", "link-unwritable":
				if rng.IntN(3) != 0 {
					st.Until = at + ms(300, 1800)
				}
			case "kill-restart", "term-restart":
				if kind == "kill-restart" && at > 500*time.Millisecond && rng.IntN(3) == 0 {
					// Killed during a slow download of a release the chain
					// no longer wants: the next start has nothing to fetch,
					// and must still remove what the download left.
					prev := versionsBody(min, target)
					up := chain(at-ms(300, 450), "chain-up", true)
					min, target = up.Arg[:strings.Index(up.Arg, "..")], up.Arg[strings.Index(up.Arg, "..")+2:]
					steps = append(steps,
						simStep{At: up.At - 50*time.Millisecond, Kind: "server-slow", Arg: "slow 1500ms"},
						up,
						simStep{At: at - 20*time.Millisecond, Kind: "chain-down", Arg: "back, before the kill", Raw: prev})
					fmt.Sscanf(strings.ReplaceAll(prev, "\n", " "), "provider_min: %s provider_target: %s", &min, &target)
					st.Arg = "during a download"
					break
				}
				// Half the time the fresh instance is stopped again soon:
				// a stop signal during its start-time read and download.
				if rng.IntN(2) == 0 {
					steps = append(steps, simStep{At: at + ms(50, 500), Kind: "term-restart", Arg: "soon after a start"})
				}
			}
			if kind == "hup-env" {
				i := rng.IntN(len(cfg.Services))
				cfg.Services[i].Gen++
				st.Arg = cfg.Services[i].Name
				if cfg.Services[i].Ignore && rng.IntN(2) == 0 {
					// A stop signal while the reload waits for that service.
					steps = append(steps, simStep{At: at + ms(50, 300), Kind: "term-restart", Arg: "during a reload"})
				}
			}
			if strings.HasPrefix(kind, "hup-") {
				c := cfg.clone()
				st.Config = &c
			}
			steps = append(steps, st)
			if st.Until > 0 && kind != "chain-flap" {
				steps = append(steps, simStep{At: st.Until, Kind: "end-" + kind})
			}
		}
		for _, e := range extra {
			steps = append(steps, e, simStep{At: e.Until, Kind: "end-" + e.Kind})
		}
		sort.SliceStable(steps, func(i, j int) bool { return steps[i].At < steps[j].At })
		q.Steps = steps
		q.LinkPersist = rng.IntN(4) == 0 && slices.ContainsFunc(steps, func(s simStep) bool { return s.Kind == "link-unwritable" && s.Until == 0 })

		// The last change of the chain, once the faults are cleared: mostly the
		// highest good release, at times a lower one or the crashing one.
		switch r := rng.IntN(5); {
		case r < 3:
			q.FinalTarget = "6.2.7"
		case r == 3:
			q.FinalTarget = "6.2.6"
		default:
			q.FinalTarget = simCrasher
		}
		q.FinalMin = pickMin(q.FinalTarget)
		if q.FinalMin == min && q.FinalTarget == target {
			// A change the upgrader must see (it also lifts bad marks).
			if q.FinalMin == "6.2.5" {
				q.FinalMin = q.FinalTarget
			} else {
				q.FinalMin = "6.2.5"
			}
		}
		q.Overlaps = overlaps(steps, q.Config)
		if q.Overlaps >= 1 {
			return q
		}
	}
}

// overlaps counts the pairs of faults whose windows meet; a point event's
// window is the time its effects take (a restart, a reload).
func overlaps(steps []simStep, cfg simConfig) int {
	type win struct{ from, to time.Duration }
	var ws []win
	for _, s := range steps {
		if !slices.Contains(simKinds, s.Kind) || notFaults[s.Kind] {
			continue
		}
		to := s.Until
		if to == 0 {
			to = s.At + 400*time.Millisecond
			if s.Kind == "enospc" || s.Kind == "link-unwritable" {
				to = 3 * time.Second // until cleared
			}
		}
		ws = append(ws, win{s.At, to})
	}
	n := 0
	for i := range ws {
		for j := i + 1; j < len(ws); j++ {
			if ws[i].from <= ws[j].to && ws[j].from <= ws[i].to {
				n++
			}
		}
	}
	// A service ignoring its stop signal is a fault for the whole sequence.
	for _, s := range cfg.Services {
		if s.Ignore {
			n += len(ws)
		}
	}
	return n
}

// simRecord is the SIMSEQ line of one sequence.
type simRecord struct {
	Seed       uint64         `json:"seed"`
	Kinds      map[string]int `json:"kinds"`
	Overlaps   int            `json:"overlaps"`
	Violations []string       `json:"violations"`
	Converge   float64        `json:"converge_s"`
	Wall       float64        `json:"wall_s"`
	Disk       string         `json:"disk"` // tmpfs, or why not
}

// simSummary is the SIMSUMMARY line.
type simSummary struct {
	Seed       uint64         `json:"seed"`
	Sequences  int            `json:"sequences"`
	Failed     []uint64       `json:"failed_seeds"`
	Kinds      map[string]int `json:"kinds"`
	Violations map[string]int `json:"violations"` // by invariant
	Disk       string         `json:"disk"`
	Wall       float64        `json:"wall_s"`
}

func TestSimulationComposedFaults(t *testing.T) {
	n := 3
	if s := os.Getenv("LAVAVISOR_SIM_SEQUENCES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			t.Fatalf("LAVAVISOR_SIM_SEQUENCES=%q: want a number ≥ 0", s)
		}
		n = v
	}
	if n == 0 {
		t.Skip("LAVAVISOR_SIM_SEQUENCES=0")
	}
	seed := uint64(time.Now().UnixNano()) % 1_000_000_000
	if s := os.Getenv("LAVAVISOR_SIM_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("LAVAVISOR_SIM_SEED=%q: want a number", s)
		}
		seed = v
	}
	t.Logf("seeds %d to %d: LAVAVISOR_SIM_SEED=%d LAVAVISOR_SIM_SEQUENCES=%d replays them", seed, seed+uint64(n)-1, seed, n)
	var mu sync.Mutex
	sum := simSummary{Seed: seed, Sequences: n, Kinds: map[string]int{}, Violations: map[string]int{}}
	start := time.Now()
	t.Run("seq", func(t *testing.T) {
		for i := range n {
			s := seed + uint64(i)
			t.Run(strconv.FormatUint(s, 10), func(t *testing.T) {
				t.Parallel()
				rec := runSimSequence(t, genSequence(s))
				mu.Lock()
				defer mu.Unlock()
				for k, v := range rec.Kinds {
					sum.Kinds[k] += v
				}
				seen := map[string]bool{}
				for _, v := range rec.Violations {
					inv, _, _ := strings.Cut(v, ":")
					if !seen[inv] {
						sum.Violations[inv]++
						seen[inv] = true
					}
				}
				if len(rec.Violations) > 0 || t.Failed() {
					sum.Failed = append(sum.Failed, s)
				}
				sum.Disk = rec.Disk
			})
		}
	})
	sum.Wall = time.Since(start).Seconds()
	slices.Sort(sum.Failed)
	b, _ := json.Marshal(sum)
	t.Logf("SIMSUMMARY %s", b)
	var low []string
	for _, k := range simKinds {
		low = append(low, fmt.Sprintf("%s %d", k, sum.Kinds[k]))
	}
	t.Logf("%d sequences, %d failed %v; events by kind: %s", n, len(sum.Failed), sum.Failed, strings.Join(low, ", "))
}

// simRun is one sequence in progress.
type simRun struct {
	t     *testing.T
	q     simSequence
	h     *testHome
	root  string // .lavavisor, resolved
	disk  *simDisk
	srv   *simServer
	start time.Time

	p        *proc
	cur      atomic.Pointer[proc] // p, for the sampler
	started  time.Time            // of p
	hupSent  time.Time
	cfg      simConfig
	min      string // versions last written (valid)
	target   string
	diskFull bool
	// Fault windows open: a fault ends when its last window does.
	fullWindows, linkWindows int
	cleared                  time.Time

	mu         sync.Mutex
	trace      []string
	violations []string
}

func (r *simRun) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trace = append(r.trace, fmt.Sprintf("%7.3fs ", time.Since(r.start).Seconds())+fmt.Sprintf(format, args...))
}

func (r *simRun) violate(format string, args ...any) {
	v := fmt.Sprintf(format, args...)
	r.note("VIOLATION %s", v)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Contains(r.violations, v) {
		r.violations = append(r.violations, v)
	}
}

func (r *simRun) sysLink() string { return filepath.Join(r.h.dir, "sysbin", "lavap") }

func (r *simRun) writeConfig() {
	t := r.t
	var b strings.Builder
	fmt.Fprintf(&b, "node: file://%s/versions.yml\npoll-interval: %s\nstop-timeout: 2s\nmin-uptime: %s\nlink: %s\nrolling: %v\n",
		r.h.dir, simPoll, simMinUptime, r.sysLink(), r.cfg.Rolling)
	fmt.Fprintf(&b, "auto-download: true\ndownload:\n  url: %s/v{version}/lavap-v{version}-{os}-{arch}\n  checksums: %s/v{version}/sha256sum.txt\n  timeout: 20s\n", r.srv.URL, r.srv.URL)
	if r.cfg.Pin != "" {
		fmt.Fprintf(&b, "pin: %s\n", r.cfg.Pin)
	}
	b.WriteString("services:\n")
	for _, s := range r.cfg.Services {
		fmt.Fprintf(&b, "  - name: %s\n    args: [rpcprovider, %s.yml, --from, op]\n", s.Name, s.Name)
		fmt.Fprintf(&b, "    env: {FAKE_RECORD: %q, FAKE_TIMELINE: %q, FAKE_GEN: \"%d\"", r.h.record(s.Name), r.timeline(s.Name), s.Gen)
		if s.Ignore {
			b.WriteString(", FAKE_IGNORE: \"1\"")
		}
		b.WriteString("}\n")
		if s.Restart != "" {
			fmt.Fprintf(&b, "    restart: %s\n", s.Restart)
		}
		if s.StopTimeout > 0 {
			fmt.Fprintf(&b, "    stop-timeout: %s\n", s.StopTimeout)
		}
	}
	// config.yml is a link to a file beside the home, outside the tmpfs that
	// the disk fault fills: a reload must not fail for want of space.
	tmp := filepath.Join(r.h.dir, "config.yml.tmp")
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(r.h.dir, "config.yml")); err != nil {
		t.Fatal(err)
	}
}

func (r *simRun) timeline(name string) string { return filepath.Join(r.h.dir, name+".tl") }

func (r *simRun) writeVersions(body string) {
	tmp := filepath.Join(r.h.dir, "versions.yml.tmp")
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(r.h.dir, "versions.yml")); err != nil {
		r.t.Fatal(err)
	}
}

// serviceMarker is in the environment of every service of this home.
func (r *simRun) serviceMarker() string { return "FAKE_RECORD=" + r.h.dir + "/" }

func runSimSequence(t *testing.T, q simSequence) (rec simRecord) {
	began := time.Now()
	rec = simRecord{Seed: q.Seed, Kinds: q.kinds(), Overlaps: q.Overlaps}
	h := newTestHome(t)
	r := &simRun{t: t, q: q, h: h, cfg: q.Config.clone(), start: time.Now(), min: "6.2.5", target: "6.2.5"}
	r.disk = newSimDisk(t, h.root())
	rec.Disk = "tmpfs"
	if !r.disk.mounted {
		rec.Disk = "not run: no tmpfs (not root?)"
	}
	var err error
	if r.root, err = filepath.EvalSymlinks(h.root()); err != nil {
		t.Fatal(err)
	}
	r.srv = newSimServer(t, r.start)
	defer func() {
		rec.Violations = append([]string{}, r.violations...)
		rec.Wall = time.Since(began).Seconds()
		if len(r.violations) > 0 {
			r.report()
		}
		b, _ := json.Marshal(rec)
		t.Logf("SIMSEQ %s", b)
	}()

	h.place("6.2.5")
	h.link("6.2.5")
	if q.Placed626 {
		h.place("6.2.6")
	}
	if err := os.MkdirAll(filepath.Dir(r.sysLink()), 0o755); err != nil {
		t.Fatal(err)
	}
	r.writeVersions(versionsBody("6.2.5", "6.2.5"))
	r.writeConfig()
	if err := os.Symlink(filepath.Join(h.dir, "config.yml"), filepath.Join(h.root(), "config.yml")); err != nil {
		t.Fatal(err)
	}
	r.startLavavisor()
	if !r.pollUntil(simConverge, func() bool { return len(r.checkServices("6.2.5")) == 0 }) {
		r.violate("setup: services not up on 6.2.5 within %s: %v", simConverge, r.checkServices("6.2.5"))
		return rec
	}
	stopSampler := r.sample()
	defer stopSampler()
	r.start = time.Now()
	r.note("services up on 6.2.5; sequence %d starts (%d steps, %d overlapping fault pairs)", q.Seed, len(q.Steps), q.Overlaps)

	for _, st := range q.Steps {
		if d := time.Until(r.start.Add(st.At)); d > 0 {
			time.Sleep(d) // the schedule of the sequence, not a synchronisation
		}
		r.step(st)
		if t.Failed() {
			return rec
		}
	}
	cleared := time.Now()
	r.clear()
	ok := r.pollUntil(simConverge, func() bool {
		if exited(r.p) {
			r.exitedByItself()
			r.startLavavisor() // as an orchestrator would
			return false
		}
		return len(r.checkConverged()) == 0
	})
	rec.Converge = time.Since(cleared).Seconds()
	if !ok {
		for _, v := range r.checkConverged() {
			r.violate("%s", v)
		}
	} else {
		r.note("converged in %.2fs", rec.Converge)
		r.checkQuietState()
	}
	r.stop("final stop")
	return rec
}

// sample checks every 50 ms, until stopped, that no service runs twice at
// once among the children of the running LavaVisor.
func (r *simRun) sample() (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			p := r.cur.Load()
			if p == nil || exited(p) {
				continue
			}
			by := map[string][]child{}
			for _, c := range simChildrenOf(p.cmd.Process.Pid) {
				if c.service != "" {
					by[c.service] = append(by[c.service], c)
				}
			}
			for name, cs := range by {
				if len(cs) > 1 {
					r.violate("dup: %s runs %d times at once: %v", name, len(cs), cs)
				}
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); <-finished }) }
}

// releaseTemps lists the temporary files of the releases folder.
func (r *simRun) releaseTemps() []string {
	var out []string
	entries, _ := os.ReadDir(filepath.Join(r.root, "upgrades"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp") {
			out = append(out, e.Name())
		}
	}
	return out
}

// tempsCleanedAtStart: the leftovers of a killed download are removed by the
// next instance at its start, not at its next fetch (issue 10, point 7),
// within 5 s, while p runs.
func (r *simRun) tempsCleanedAtStart(p *proc, left []string) {
	gone := func() bool {
		now := r.releaseTemps()
		return !slices.ContainsFunc(left, func(n string) bool { return slices.Contains(now, n) })
	}
	// Once the new instance runs a service its start is over (a start-time
	// fetch, which also cleans, comes before); then a second of grace.
	up := func() bool {
		return exited(p) || slices.ContainsFunc(simChildrenOf(p.cmd.Process.Pid), func(c child) bool { return c.service != "" })
	}
	if !r.pollUntil(10*time.Second, up) || exited(p) {
		return
	}
	if !r.pollUntil(time.Second, func() bool { return exited(p) || gone() }) {
		r.violate("temp: a killed download's temporary files %v still there 1 s after the next instance started its services", left)
	}
}

// awaitBegun waits until the running LavaVisor has written its first line:
// no program can handle a signal before its main begins, and the first line
// comes after the config is read, when LavaVisor must handle them.
func (r *simRun) awaitBegun() {
	if r.p == nil {
		return
	}
	if !r.pollUntil(10*time.Second, func() bool { return exited(r.p) || r.p.out.String() != "" }) {
		r.note("lavavisor pid %d wrote nothing in 10 s", r.p.cmd.Process.Pid)
	}
}

func (r *simRun) startLavavisor() {
	r.p = r.h.start("start")
	r.cur.Store(r.p)
	r.started = time.Now()
	r.note("lavavisor started, pid %d", r.p.cmd.Process.Pid)
}

// exited: p has ended.
func exited(p *proc) bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// pollUntil polls cond every 20 ms until it holds or d has passed.
func (r *simRun) pollUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *simRun) step(st simStep) {
	if r.p != nil && exited(r.p) {
		r.exitedByItself()
	}
	if r.p == nil && !r.diskFull && !strings.HasPrefix(st.Kind, "end-") {
		r.startLavavisor() // as an orchestrator would
	}
	r.note("%s", st)
	switch st.Kind {
	case "chain-up", "chain-down", "chain-flap", "flap-set", "chain-hostile":
		r.writeVersions(st.Raw)
		var m, tg string
		if n, _ := fmt.Sscanf(strings.ReplaceAll(st.Raw, "\n", " "), "provider_min: %s provider_target: %s", &m, &tg); n == 2 && st.Kind != "chain-hostile" {
			r.min, r.target = m, tg
		}
	case "server-404":
		r.srv.set(serve404, 0)
	case "server-badsum":
		r.srv.set(serveBadSum, 0)
	case "server-slow":
		var d int
		fmt.Sscanf(st.Arg, "slow %dms", &d)
		r.srv.set(serveSlow, time.Duration(d)*time.Millisecond)
	case "server-good":
		r.srv.set(serveGood, 0)
	case "hup-add", "hup-remove", "hup-env", "hup-pin":
		r.cfg = st.Config.clone()
		r.writeConfig()
		r.awaitBegun()
		if r.p != nil && !exited(r.p) {
			r.p.cmd.Process.Signal(syscall.SIGHUP)
			r.hupSent = time.Now()
		}
	case "svc-crash", "svc-end":
		sig := syscall.SIGKILL
		if st.Kind == "svc-end" {
			sig = syscall.SIGINT // the fake exits 0: with restart never, for good
		}
		if r.p == nil {
			return
		}
		hit := false
		for _, c := range simChildrenOf(r.p.cmd.Process.Pid) {
			if c.service == st.Arg {
				syscall.Kill(c.pid, sig)
				r.note("  %s sent to %s", sig, c)
				hit = true
			}
		}
		if !hit {
			r.note("  %s has no live process", st.Arg)
		}
	case "enospc":
		// Windows may overlap: the disk is freed when the last one ends.
		r.fullWindows++
		if err := r.disk.fill(); err != nil {
			r.note("  disk not filled: %v", err)
			return
		}
		r.diskFull = true
	case "end-enospc":
		if r.fullWindows--; r.fullWindows == 0 {
			r.freeDisk()
		}
	case "link-unwritable":
		r.linkWindows++
		os.RemoveAll(filepath.Dir(r.sysLink()))
	case "end-link-unwritable":
		if r.linkWindows--; r.linkWindows == 0 {
			os.MkdirAll(filepath.Dir(r.sysLink()), 0o755)
		}
	case "kill-restart":
		if r.p == nil {
			return
		}
		r.p.cmd.Process.Signal(syscall.SIGKILL)
		<-r.p.done
		r.awaitNoServices("after SIGKILL of lavavisor (parent-death signal)")
		left := r.releaseTemps()
		r.p = nil
		r.startLavavisor()
		if len(left) > 0 {
			r.note("  left by the killed instance: %v", left)
			go r.tempsCleanedAtStart(r.p, left)
		}
	case "term-restart":
		if r.p == nil {
			return
		}
		r.stop("SIGTERM mid-sequence " + st.Arg)
		r.p = nil
		r.startLavavisor()
	}
}

// exitedByItself records the end of a LavaVisor nobody stopped: exit 1 may
// be its answer to a full disk (it cannot start); anything else, or while the
// disk has room, is a violation; a signal's default action (128+N) above all:
// a signal arrived before LavaVisor handled it.
func (r *simRun) exitedByItself() {
	code := r.p.code
	r.note("lavavisor pid %d exited by itself with %d", r.p.cmd.Process.Pid, code)
	switch {
	case code > 128:
		r.violate("exit: lavavisor killed by signal %d, sent %s after its start (a signal before it handles signals)", code-128, r.lastSignalAfterStart())
	case !r.diskFull || code != 1:
		r.violate("exit: lavavisor exited by itself (%d) during the sequence (disk full: %v)", code, r.diskFull)
	}
	r.p = nil
}

func (r *simRun) lastSignalAfterStart() string {
	if r.hupSent.Before(r.started) {
		return "no SIGHUP"
	}
	return fmt.Sprintf("SIGHUP %dms", r.hupSent.Sub(r.started).Milliseconds())
}

func (r *simRun) freeDisk() {
	if err := r.disk.free(); err != nil {
		r.t.Fatal(err)
	}
	r.diskFull = false
}

// awaitNoServices waits until no process of the home's services is alive.
func (r *simRun) awaitNoServices(when string) {
	if !r.pollUntil(10*time.Second, func() bool { return len(processesWithEnv(r.serviceMarker())) == 0 }) {
		r.violate("inv5: %s: service processes still alive 10 s later: %v", when, processesWithEnv(r.serviceMarker()))
	}
}

// stop sends SIGTERM and checks §6.8 point 5: exit 0, no temporary file,
// no service left, none started during the shutdown.
func (r *simRun) stop(when string) {
	p := r.p
	if p == nil || exited(p) {
		if p != nil {
			r.violate("exit: lavavisor had exited (%d) before the %s", p.code, when)
		}
		return
	}
	r.awaitBegun()
	live := simChildrenOf(p.cmd.Process.Pid)
	sent := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM) // when it has just ended, p.done says how
	select {
	case <-p.done:
	case <-time.After(simStop):
		r.violate("inv5: %s: no exit %s after SIGTERM", when, simStop)
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
	r.note("%s: exit %d after %.2fs", when, p.code, time.Since(sent).Seconds())
	if p.code != 0 {
		r.violate("inv5: %s: exit %d after SIGTERM, want 0", when, p.code)
	}
	filepath.Walk(r.root, func(path string, fi os.FileInfo, err error) error {
		if err == nil && strings.HasPrefix(fi.Name(), ".tmp") {
			r.violate("inv5: %s: temporary file left: %s", when, strings.TrimPrefix(path, r.root+"/"))
		}
		return nil
	})
	if left := processesWithEnv(r.serviceMarker()); len(left) > 0 {
		r.violate("inv5: %s: service processes left after the graceful stop: %v", when, left)
		r.awaitNoServices(when)
	}
	// A stop is not a failure (issue 10, point 7): an upgrade it interrupted
	// is not recorded as failed.
	var st struct {
		Last *struct {
			From, To, Result string
			At               time.Time
		} `json:"last_upgrade"`
	}
	if b, err := os.ReadFile(filepath.Join(r.root, "state.json")); err == nil && json.Unmarshal(b, &st) == nil &&
		st.Last != nil && !st.Last.At.Before(sent) && st.Last.Result != "success" {
		r.violate("stop: %s: the stop was recorded in state.json as an upgrade %s -> %s with result %q", when, st.Last.From, st.Last.To, st.Last.Result)
	}
	tl := r.timelines()
	for _, e := range tl {
		if e.kind == "start" && e.at.After(sent.Add(time.Second)) {
			r.violate("inv5: %s: %s started (pid %d, %s) %.2fs after SIGTERM", when, e.service, e.pid, e.version, e.at.Sub(sent).Seconds())
		}
	}
	// Answered at once: every fake lavap running at the SIGTERM saw its stop
	// signal (or ended) within a second, whatever LavaVisor was doing.
	for _, c := range live {
		if c.service == "" || !strings.HasPrefix(c.exe, r.root+"/upgrades/v6.2.") {
			continue
		}
		// One that had only just started may not handle signals yet: its
		// death by SIGINT leaves no line.
		if !slices.ContainsFunc(tl, func(e simEvent) bool {
			return e.pid == c.pid && e.kind == "start" && e.at.Before(sent.Add(-100*time.Millisecond))
		}) {
			continue
		}
		if !slices.ContainsFunc(tl, func(e simEvent) bool {
			return e.pid == c.pid && (e.kind == "signal" || e.kind == "exit") && !e.at.After(sent.Add(time.Second))
		}) {
			r.violate("inv5: %s: %s (pid %d) got no stop signal within 1 s of LavaVisor's SIGTERM", when, c.service, c.pid)
		}
	}
}

// clear ends every fault and writes the last change of the chain.
func (r *simRun) clear() {
	r.srv.set(serveGood, 0)
	r.freeDisk()
	if !r.q.LinkPersist {
		os.MkdirAll(filepath.Dir(r.sysLink()), 0o755)
	}
	if r.p != nil && exited(r.p) {
		r.exitedByItself()
	}
	if r.p == nil {
		r.startLavavisor()
	}
	// What the faults set in motion (a rollback, a crash restart) ends
	// before the last change: a bad mark made after it would rightly hold.
	quiet := r.pollUntil(10*time.Second, func() bool {
		tl := r.timelines()
		return len(tl) == 0 || time.Since(tl[len(tl)-1].at) > 800*time.Millisecond
	})
	r.note("services quiet for 0.8 s: %v", quiet)
	r.writeVersions(versionsBody(r.q.FinalMin, r.q.FinalTarget))
	r.min, r.target = r.q.FinalMin, r.q.FinalTarget
	r.note("faults cleared (link folder %s); chain at %s..%s; pin %q; services %v",
		map[bool]string{true: "still missing", false: "back"}[r.q.LinkPersist], r.min, r.target, r.cfg.Pin, r.names())
	r.cleared = time.Now()
}

func (r *simRun) names() []string {
	var out []string
	for _, s := range r.cfg.Services {
		out = append(out, s.Name)
	}
	return out
}

// expected is the release every service must end on, or "" when any good
// release at or above the target will do.
func (r *simRun) expected() (want string, crasher bool) {
	if r.cfg.Pin != "" {
		return r.cfg.Pin, false
	}
	if r.target == simCrasher {
		return "", true
	}
	return r.target, false
}

// checkServices lists what is wrong with the services against want (a
// release, or "" for the one current names): §6.8 points 1 and 2.
func (r *simRun) checkServices(want string) []string {
	var bad []string
	if r.p == nil || exited(r.p) {
		return []string{"inv1: lavavisor is not running"}
	}
	cur, err := os.Readlink(filepath.Join(r.root, "current"))
	if err != nil {
		return []string{"inv2: current: " + err.Error()}
	}
	rel := strings.TrimPrefix(filepath.Base(cur), "v")
	if want == "" {
		want = rel
	} else if rel != want {
		bad = append(bad, fmt.Sprintf("inv2: current is %s, want v%s", cur, want))
	}
	kids := simChildrenOf(r.p.cmd.Process.Pid)
	byName := map[string][]child{}
	for _, c := range kids {
		if c.service != "" {
			byName[c.service] = append(byName[c.service], c)
		}
	}
	wantExe := filepath.Join(r.root, "upgrades", "v"+want, "lavap")
	for _, s := range r.cfg.Services {
		live := byName[s.Name]
		if len(live) == 0 && s.Restart == "" {
			bad = append(bad, fmt.Sprintf("inv1: %s (restart always) has no live process", s.Name))
		}
		if len(live) > 1 {
			bad = append(bad, fmt.Sprintf("inv1: %s runs %d times: %v", s.Name, len(live), live))
		}
		for _, c := range live {
			if c.exe != wantExe {
				bad = append(bad, fmt.Sprintf("inv2: %s pid %d runs %s, want %s (current %s)", s.Name, c.pid, strings.TrimPrefix(c.exe, r.root+"/"), "upgrades/v"+want+"/lavap", cur))
			}
		}
	}
	for name, live := range byName {
		if !r.cfg.has(name) {
			bad = append(bad, fmt.Sprintf("inv1: %s was removed by a reload but runs: %v", name, live))
		}
	}
	return bad
}

// checkConverged: §6.8 points 1 to 4 once the faults are cleared.
func (r *simRun) checkConverged() []string {
	want, crasher := r.expected()
	var bad []string
	cur, _ := os.Readlink(filepath.Join(r.root, "current"))
	rel := strings.TrimPrefix(filepath.Base(cur), "v")
	switch {
	case want != "":
		// A target below the running release keeps the running one.
		if r.cfg.Pin == "" && slices.Contains(simGood, rel) && compareVersions(rel, want) > 0 {
			want = rel
		}
		bad = append(bad, r.checkServices(want)...)
		if len(bad) > 0 && !slices.ContainsFunc(bad, func(s string) bool { return strings.HasPrefix(s, "inv1") }) {
			// Everything runs, just not what the chain asks: stuck.
			bad = append(bad, fmt.Sprintf("inv3: chain at %s..%s (pin %q) since %.2fs, services and current not on v%s", r.min, r.target, r.cfg.Pin, time.Since(r.cleared).Seconds(), want))
		}
	case crasher:
		bad = append(bad, r.checkServices("")...)
		if rel == simCrasher {
			bad = append(bad, "inv2: current names the crashing release "+simCrasher)
		}
		tried := slices.ContainsFunc(r.timelines(), func(e simEvent) bool {
			return e.version == simCrasher && e.kind == "start" && e.at.After(r.cleared)
		})
		if !tried {
			bad = append(bad, fmt.Sprintf("inv3: chain at %s..%s since %.2fs (a change, which lifts a bad mark): %s never tried", r.min, r.target, time.Since(r.cleared).Seconds(), simCrasher))
		}
	}
	if !slices.Contains(simGood, rel) {
		bad = append(bad, fmt.Sprintf("inv2: current is %q, not a good release", cur))
	} else if err := r.verified(rel); err != nil {
		bad = append(bad, "inv2: "+err.Error())
	}
	if !r.q.LinkPersist {
		wantLink := filepath.Join(r.root, "upgrades", "v"+rel, "lavap")
		if got, err := os.Readlink(r.sysLink()); err != nil || got != wantLink {
			bad = append(bad, fmt.Sprintf("inv4: system-path link is %q (%v) once its folder is back, want %s", got, err, wantLink))
		}
	}
	entries, _ := os.ReadDir(filepath.Join(r.root, "upgrades"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp") {
			bad = append(bad, "inv5: temporary download left in the releases folder: "+e.Name())
		}
	}
	return bad
}

// verified: the release's binary has the sha256 of its manifest.
func (r *simRun) verified(rel string) error {
	var m struct {
		Version string `json:"version"`
		SHA256  string `json:"sha256"`
	}
	dir := filepath.Join(r.root, "upgrades", "v"+rel)
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil || json.Unmarshal(b, &m) != nil {
		return fmt.Errorf("v%s has no readable manifest: %v", rel, err)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "lavap"))
	if err != nil {
		return fmt.Errorf("v%s has no binary: %w", rel, err)
	}
	if sum := fmt.Sprintf("%x", sha256.Sum256(bin)); sum != m.SHA256 || m.Version != rel {
		return fmt.Errorf("v%s does not verify: sha256 %s, manifest %+v", rel, sum, m)
	}
	return nil
}

// checkQuietState: with nothing to record, state.json is not rewritten
// (issue 10, point 7): watched for 6 polls, once LavaVisor has recorded the
// final versions (a poller backing off after hostile answers reads them up
// to its retry delay later; until then a write is due, not a violation).
func (r *simRun) checkQuietState() {
	path := filepath.Join(r.root, "state.json")
	seen := r.pollUntil(simConverge, func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		var st struct {
			Chain struct {
				ProviderMin    string `json:"provider_min"`
				ProviderTarget string `json:"provider_target"`
			} `json:"chain"`
			Journal json.RawMessage `json:"journal"`
		}
		// And no upgrade in progress: its result is written after the last
		// service's probation, once the services already look converged.
		return json.Unmarshal(b, &st) == nil && st.Chain.ProviderMin == r.q.FinalMin && st.Chain.ProviderTarget == r.q.FinalTarget && st.Journal == nil
	})
	if !seen {
		r.violate("state: the final chain versions %s..%s were never recorded in state.json, or an upgrade never ended", r.q.FinalMin, r.q.FinalTarget)
		return
	}
	stat := func() string {
		fi, err := os.Stat(path)
		if err != nil {
			return err.Error()
		}
		st := fi.Sys().(*syscall.Stat_t)
		return fmt.Sprintf("ino %d mtime %s", st.Ino, fi.ModTime().Format(time.RFC3339Nano))
	}
	before := stat()
	time.Sleep(6 * simPoll) // the window watched, not a synchronisation
	if after := stat(); after != before {
		r.violate("state: state.json rewritten while nothing changed (%s, then %s)", before, after)
	}
}

// simEvent is one line of a fake lavap timeline.
type simEvent struct {
	at      time.Time
	kind    string
	pid     int
	version string
	service string
}

func (r *simRun) timelines() []simEvent {
	var out []simEvent
	files, _ := filepath.Glob(filepath.Join(r.h.dir, "*.tl"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		name := strings.TrimSuffix(filepath.Base(f), ".tl")
		for _, l := range strings.Split(string(b), "\n") {
			fs := strings.Fields(l)
			if len(fs) < 4 {
				continue
			}
			ns, err1 := strconv.ParseInt(fs[0], 10, 64)
			pid, err2 := strconv.Atoi(fs[2])
			if err1 != nil || err2 != nil {
				continue
			}
			out = append(out, simEvent{time.Unix(0, ns), fs[1], pid, fs[3], name})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].at.Before(out[j].at) })
	return out
}

// report prints what a failing sequence needs to be understood and replayed.
func (r *simRun) report() {
	t := r.t
	var b strings.Builder
	fmt.Fprintf(&b, "sequence %d failed: replay with LAVAVISOR_SIM_SEED=%d LAVAVISOR_SIM_SEQUENCES=1 go test -run TestSimulationComposedFaults .\n", r.q.Seed, r.q.Seed)
	cfg, _ := json.Marshal(r.q.Config)
	fmt.Fprintf(&b, "config at start: %s; 6.2.6 placed: %v; link folder kept missing: %v; final chain %s..%s\n", cfg, r.q.Placed626, r.q.LinkPersist, r.q.FinalMin, r.q.FinalTarget)
	b.WriteString("events:\n")
	for _, s := range r.q.Steps {
		fmt.Fprintf(&b, "  %s\n", s)
	}
	b.WriteString("violations:\n")
	for _, v := range r.violations {
		fmt.Fprintf(&b, "  %s\n", v)
	}
	b.WriteString("trace (seconds since the sequence started):\n")
	for _, l := range r.trace {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	b.WriteString("fake lavap timelines:\n")
	for _, e := range r.timelines() {
		fmt.Fprintf(&b, "  %7.3fs %s %s pid %d %s\n", e.at.Sub(r.start).Seconds(), e.service, e.kind, e.pid, e.version)
	}
	b.WriteString("release server requests:\n")
	for _, l := range r.srv.requests() {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	if cur, err := os.Readlink(filepath.Join(r.root, "current")); err == nil {
		fmt.Fprintf(&b, "current -> %s\n", cur)
	}
	if st, err := os.ReadFile(filepath.Join(r.root, "state.json")); err == nil {
		fmt.Fprintf(&b, "state.json: %s\n", strings.TrimSpace(string(st)))
	}
	for _, v := range r.violations {
		t.Error(v)
	}
	t.Log(b.String())
}
