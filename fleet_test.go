package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lavavisor/lavavisor/upgrade"
)

// Upgrade windows and spread (SPEC §10), end to end. The instances' clock of
// the window and spread is moved with the test seam LAVAVISOR_TEST_CLOCK_OFFSET_FILE
// (release.go): a file holding an offset from the wall clock, re-read at every
// look, so that a test brings an instance to a window's opening without
// waiting for it. Host names are real: `unshare --uts` gives each instance
// its own (the tests run as root, as the container image's own tests do).

// fleetClock is one instance's clock: the wall clock plus an offset kept in a
// file that the instance re-reads.
type fleetClock struct {
	t    *testing.T
	path string
	off  time.Duration
}

func newFleetClock(t *testing.T, dir string) *fleetClock {
	c := &fleetClock{t: t, path: filepath.Join(dir, "clock")}
	c.set(time.Now())
	return c
}

// set makes the instance's time now be fake.
func (c *fleetClock) set(fake time.Time) {
	c.t.Helper()
	c.off = time.Until(fake)
	tmp := c.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(c.off.String()), 0o644); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Rename(tmp, c.path); err != nil {
		c.t.Fatal(err)
	}
}

// fake is the instance's time at the wall clock's w.
func (c *fleetClock) fake(w time.Time) time.Time { return w.Add(c.off).UTC() }

func (c *fleetClock) env() string { return testClockEnv + "=" + c.path }

// today is 00:00 UTC today: the tests set the instances' clocks from it.
func today() time.Time { return time.Now().UTC().Truncate(24 * time.Hour) }

func hhmm(h, m int) time.Duration { return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute }

// run starts lavavisor on h with the clock's env, under host name host
// when given.
func (c *fleetClock) start(h *testHome, host string, args ...string) *proc {
	c.t.Helper()
	return launch(c.t, c.command(h, host, args...))
}

// run runs a lavavisor command to its end with the clock's env.
func (c *fleetClock) run(h *testHome, args ...string) (int, string) {
	c.t.Helper()
	p := launch(c.t, c.command(h, "", args...))
	return p.wait(), p.out.String()
}

func (c *fleetClock) command(h *testHome, host string, args ...string) *exec.Cmd {
	argv := append([]string{"--directory", h.dir}, args...)
	cmd := exec.Command(lavavisorBin, argv...)
	if host != "" {
		cmd = exec.Command("unshare", append([]string{"--uts", "sh", "-c", `hostname "$0" && exec "$@"`, host, lavavisorBin}, argv...)...)
	}
	cmd.Env = append(os.Environ(), "NO_COLOR=1", c.env())
	return cmd
}

// pending asks status --json for the waiting upgrade.
func (c *fleetClock) pending(h *testHome) *upgrade.Pending {
	c.t.Helper()
	rep, _ := statusJSON(c.t, h.dir)
	return rep.Pending
}

// checkJSON runs check --json.
func (c *fleetClock) checkJSON(h *testHome) (int, checkReport) {
	c.t.Helper()
	code, out := c.run(h, "check", "--json")
	var r checkReport
	start := strings.Index(out, "{\n")
	if start < 0 || json.Unmarshal([]byte(out[start:]), &r) != nil {
		c.t.Fatalf("check --json: exit %d\n%s", code, out)
	}
	return code, r
}

// startedAt is when process pid started: its start in clock ticks since
// boot (stat(5) field 22), and the boot time from /proc/uptime read with the
// wall clock (btime in /proc/stat is whole seconds). Good to about 20 ms.
func startedAt(t *testing.T, pid int) time.Time {
	t.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	ticks, err := strconv.ParseInt(fields[19], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	up, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Fatal(err)
	}
	secs, err := strconv.ParseFloat(strings.Fields(string(up))[0], 64)
	if err != nil {
		t.Fatal(err)
	}
	boot := now.Add(-time.Duration(secs * float64(time.Second)))
	const clkTck = 100 // sysconf(_SC_CLK_TCK) on Linux
	return boot.Add(time.Duration(ticks) * time.Second / clkTck)
}

// measureSlack is how far startedAt may be off.
const measureSlack = 50 * time.Millisecond

// movedAt waits until the service runs version and returns when its new
// process started, on the instance's clock.
func (c *fleetClock) movedAt(h *testHome, p *proc, name, version string) time.Time {
	c.t.Helper()
	p.waitFor(name+" on "+version, func() bool { return h.lastStartVersion(name) == version })
	pids := h.pids(name)
	return c.fake(startedAt(c.t, pids[len(pids)-1]))
}

func TestUpgradeWindowWaitsAndGoesAtItsOpening(t *testing.T) {
	rs := newReleaseServer(t)
	// min-uptime 5s: the window closes while p1 is on probation.
	h := upgradeHome(t, rs, "upgrade-window: \"02:00-04:00\"\nmin-uptime: 5s\n")
	clock := newFleetClock(t, h.dir)
	day := today()
	clock.set(day.Add(hhmm(1, 0))) // an hour before the window opens
	p := clock.start(h, "", "start")
	p.waitFor("both on 6.2.5", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	p.waitLog("polling the chain")

	h.versions("6.2.5", "6.2.6") // the target only
	p.waitLog("release ready; only the swap waits")
	if rs.downloads("6.2.6") != 1 {
		t.Errorf("6.2.6 downloaded %d times while waiting, want once, at once", rs.downloads("6.2.6"))
	}
	opening := day.Add(hhmm(2, 0))
	want := upgrade.Pending{To: "6.2.6", NotBefore: opening, WaitingFor: upgrade.WaitWindow}
	pe := clock.pending(h)
	if pe == nil || pe.To != want.To || !pe.NotBefore.Equal(want.NotBefore) || pe.WaitingFor != want.WaitingFor ||
		!strings.Contains(pe.Reason, "upgrade-window 02:00-04:00 UTC") {
		t.Fatalf("status pending %+v, want %+v", pe, want)
	}
	code, r := clock.checkJSON(h)
	if code != 3 || r.Pending == nil || *r.Pending != *pe || !r.Due || r.Wanted != "6.2.6" {
		t.Errorf("check: exit %d, pending %+v, want exit 3 and %+v", code, r.Pending, pe)
	}
	code, out := clock.run(h, "check")
	if code != 3 || !strings.Contains(out, "pending: 6.2.6, not before "+opening.Format(time.RFC3339)) || !strings.Contains(out, "waiting for the window") {
		t.Errorf("check: exit %d\n%s", code, out)
	}
	code, out = clock.run(h, "status")
	if code != 0 || !strings.Contains(out, "pending: 6.2.6, not before "+opening.Format(time.RFC3339)) {
		t.Errorf("status: exit %d\n%s", code, out)
	}
	if h.count("p1", "start") != 1 || h.count("p2", "start") != 1 || h.currentTag() != "v6.2.5" {
		t.Fatalf("moved outside the window: p1 %q, current %s", h.events("p1"), h.currentTag())
	}

	clock.set(opening.Add(-2 * time.Second))
	at := clock.movedAt(h, p, "p1", "6.2.6")
	if at.Before(opening.Add(-measureSlack)) || at.After(opening.Add(time.Minute)) {
		t.Errorf("p1 moved at %s, want at the window's opening %s", at.Format(time.RFC3339Nano), opening.Format(time.RFC3339))
	}
	t.Logf("p1 swapped %s after the window opened (measured from its process start)", at.Sub(opening))
	// An upgrade in progress when the window closes finishes.
	clock.set(day.Add(hhmm(4, 0)))
	if h.lastStartVersion("p2") != "6.2.5" {
		t.Fatal("p2 moved before the window closed: the test proves nothing")
	}
	p.waitLog("upgrade done")
	if h.lastStartVersion("p2") != "6.2.6" || h.currentTag() != "v6.2.6" || rs.downloads("6.2.6") != 1 {
		t.Errorf("p2 on %s, current %s, downloads %d", h.lastStartVersion("p2"), h.currentTag(), rs.downloads("6.2.6"))
	}
	if pe := clock.pending(h); pe != nil {
		t.Errorf("still pending after the upgrade: %+v", pe)
	}
	if code, _ := clock.run(h, "check"); code != 0 {
		t.Errorf("check after the upgrade: exit %d", code)
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// A rising minimum goes at once, outside the window, also while a
// target-only upgrade waits.
func TestUpgradeWindowMinimumGoesAtOnce(t *testing.T) {
	rs := newReleaseServer(t)
	h := upgradeHome(t, rs, "upgrade-window: \"02:00-04:00\"\nupgrade-spread: 30m\n")
	clock := newFleetClock(t, h.dir)
	clock.set(today().Add(hhmm(12, 0)))
	p := clock.start(h, "", "--metrics-addr", "127.0.0.1:0", "start")
	base := metricsURL(p)
	p.waitFor("both on 6.2.5", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	p.waitLog("polling the chain")
	h.versions("6.2.5", "6.2.6")
	p.waitLog("release ready; only the swap waits")
	pe := clock.pending(h)
	if pe == nil || pe.To != "6.2.6" || pe.WaitingFor != upgrade.WaitWindow {
		t.Fatalf("pending %+v", pe)
	}
	const metric = "lavavisor_upgrade_pending_not_before_timestamp_seconds"
	if v, ok := scrape(t, base).value(metric, map[string]string{"to": "6.2.6", "waiting_for": "window"}); !ok || v != float64(pe.NotBefore.Unix()) {
		t.Errorf("%s = %v (%v), want %d", metric, v, ok, pe.NotBefore.Unix())
	}

	h.versions("6.2.6", "6.2.7") // 6.2.5 is below the new minimum
	at := clock.movedAt(h, p, "p1", "6.2.7")
	p.waitFor("p2 on 6.2.7", func() bool { return h.lastStartVersion("p2") == "6.2.7" })
	if at.UTC().Hour() < 12 || at.UTC().Hour() >= 13 {
		t.Errorf("moved at %s: not at once", at)
	}
	if h.count("p1", "start") != 2 || h.currentTag() != "v6.2.7" {
		t.Errorf("p1 %q, current %s: want one move, straight to 6.2.7", h.events("p1"), h.currentTag())
	}
	p.waitLog("upgrade done")
	if pe := clock.pending(h); pe != nil {
		t.Errorf("still pending: %+v", pe)
	}
	if _, ok := scrape(t, base)[metric]; ok {
		t.Errorf("%s still there with nothing pending", metric)
	}
}

// `lavavisor upgrade` skips the window; a reload that changes the window
// applies at once.
func TestUpgradeWindowSkippedByUpgradeAndChangedByReload(t *testing.T) {
	h := upgradeHome(t, nil, "upgrade-window: \"02:00-04:00\"\n")
	h.place("6.2.6")
	h.place("6.2.7")
	clock := newFleetClock(t, h.dir)
	clock.set(today().Add(hhmm(12, 0)))
	p := clock.start(h, "", "start")
	p.waitFor("both on 6.2.5", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	p.waitLog("polling the chain")
	h.versions("6.2.5", "6.2.6")
	p.waitLog("upgrade waits")
	code, out := clock.run(h, "upgrade")
	if code != 0 || !strings.Contains(out, "upgraded from 6.2.5 to 6.2.6") {
		t.Fatalf("upgrade: exit %d\n%s", code, out)
	}
	p.waitFor("nothing pending", func() bool { return clock.pending(h) == nil })

	h.versions("6.2.5", "6.2.7")
	p.waitFor("6.2.7 pending", func() bool { pe := clock.pending(h); return pe != nil && pe.To == "6.2.7" })
	cfg, err := os.ReadFile(filepath.Join(h.root(), "config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(cfg), `"02:00-04:00"`, `"2h-4h"`, 1)
	h.config(bad)
	code, out = clock.run(h, "reload")
	if code != 1 || !strings.Contains(out, `config.yml:6: upgrade-window: invalid upgrade window "2h-4h"`) {
		t.Errorf("reload of a bad window: exit %d\n%s", code, out)
	}
	if pe := clock.pending(h); pe == nil || pe.To != "6.2.7" || h.lastStartVersion("p1") != "6.2.6" {
		t.Errorf("a refused reload changed something: pending %+v, p1 on %s", pe, h.lastStartVersion("p1"))
	}
	h.config(strings.Replace(string(cfg), `"02:00-04:00"`, `"11:30-12:30"`, 1))
	if code, out := clock.run(h, "reload"); code != 0 {
		t.Fatalf("reload: exit %d\n%s", code, out)
	}
	p.waitFor("both on 6.2.7", func() bool { return h.lastStartVersion("p1") == "6.2.7" && h.lastStartVersion("p2") == "6.2.7" })
}

// Two instances of a fleet with different host names get different delays
// within the spread, fixed: the same after a restart, which does not wait
// again from the start. The swap comes when the reported delay is over.
func TestUpgradeSpreadFixedPerInstance(t *testing.T) {
	const spread = time.Hour
	type instance struct {
		h     *testHome
		clock *fleetClock
		host  string
		delay time.Duration
		p     *proc
	}
	var fleet [2]*instance
	used := map[time.Duration]bool{}
	for i := range fleet {
		h := upgradeHome(t, nil, "upgrade-spread: 1h\n")
		h.place("6.2.6")
		in := &instance{h: h, clock: newFleetClock(t, h.dir)}
		// Host names whose delays leave room to look before the swap.
		for n := 0; in.host == ""; n++ {
			host := fmt.Sprintf("fleet-%d-%d", i, n)
			d := upgrade.InstanceDelay(host, h.root(), spread)
			if d >= 5*time.Minute && d <= 55*time.Minute && !used[d] {
				in.host, in.delay, used[d] = host, d, true
			}
		}
		fleet[i] = in
	}
	for _, in := range fleet {
		in.p = in.clock.start(in.h, in.host, "start")
		in.p.waitFor("both on 6.2.5", func() bool { return in.h.count("p1", "start") == 1 && in.h.count("p2", "start") == 1 })
		in.p.waitLog("polling the chain")
		in.h.versions("6.2.5", "6.2.6")
	}
	var notBefore [2]time.Time
	for i, in := range fleet {
		in.p.waitLog("upgrade waits")
		pe := in.clock.pending(in.h)
		seen := in.h.state(t)["target_seen"].(map[string]any)
		at, err := time.Parse(time.RFC3339Nano, seen["at"].(string))
		if err != nil || seen["target"] != "6.2.6" {
			t.Fatalf("target_seen %v", seen)
		}
		if pe == nil || pe.WaitingFor != upgrade.WaitSpread || !pe.NotBefore.Equal(at.Add(in.delay)) ||
			!strings.Contains(pe.Reason, "this instance's delay "+in.delay.String()) {
			t.Fatalf("%s: pending %+v, want 6.2.6 at %s + %s", in.host, pe, at, in.delay)
		}
		notBefore[i] = pe.NotBefore
	}

	// A restart keeps the first sight of the target: the same not_before,
	// and the services start on the running release (the start-time move
	// waits too).
	a := fleet[0]
	a.p.signal(syscall.SIGTERM)
	if code := a.p.wait(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	a.p = a.clock.start(a.h, a.host, "start")
	a.p.waitFor("restarted on 6.2.5", func() bool { return a.h.count("p1", "start") == 2 && a.h.count("p2", "start") == 2 })
	a.p.waitLog("upgrade waits")
	if pe := a.clock.pending(a.h); pe == nil || !pe.NotBefore.Equal(notBefore[0]) || a.h.lastStartVersion("p1") != "6.2.5" {
		t.Fatalf("after a restart: pending %+v (want not before %s), p1 on %s", pe, notBefore[0], a.h.lastStartVersion("p1"))
	}

	// The swap comes when the delay is over, not before.
	a.clock.set(notBefore[0].Add(-2 * time.Second))
	at := a.clock.movedAt(a.h, a.p, "p1", "6.2.6")
	if at.Before(notBefore[0].Add(-measureSlack)) || at.After(notBefore[0].Add(time.Minute)) {
		t.Errorf("moved at %s, want at %s", at.Format(time.RFC3339Nano), notBefore[0].Format(time.RFC3339))
	}
	t.Logf("delays %s (%s) and %s (%s); %s swapped %s after its not_before", fleet[0].delay, fleet[0].host, fleet[1].delay, fleet[1].host, a.host, at.Sub(notBefore[0]))
	b := fleet[1]
	if pe := b.clock.pending(b.h); pe == nil || !pe.NotBefore.Equal(notBefore[1]) || b.h.lastStartVersion("p1") != "6.2.5" {
		t.Errorf("the other instance moved with the first: pending %+v, p1 on %s", pe, b.h.lastStartVersion("p1"))
	}
}

// Bad window and spread values are refused with file:line (or the flag), and
// nothing is started or changed.
func TestUpgradeWindowBadValuesRefused(t *testing.T) {
	h := upgradeHome(t, nil, "upgrade-window: \"02:00-02:10\"\nupgrade-spread: 10m\n")
	stateBefore, _ := os.ReadFile(filepath.Join(h.root(), "state.json"))
	code, out := h.ctl("start")
	if code != 1 || !strings.Contains(out, "config.yml:7: upgrade-spread: 10m0s: must be shorter than upgrade-window 02:00-02:10") {
		t.Errorf("start: exit %d\n%s", code, out)
	}
	code, out = h.ctl("--upgrade-window", "2-4", "pod", "--", "lavap", "rpcprovider")
	if code != 1 || !strings.Contains(out, `--upgrade-window: invalid upgrade window \"2-4\"`) {
		t.Errorf("pod: exit %d\n%s", code, out)
	}
	cmd := exec.Command(lavavisorBin, "--directory", h.dir, "check")
	cmd.Env = append(os.Environ(), "LAVAVISOR_UPGRADE_SPREAD=-5m")
	b, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(b), "--upgrade-spread: negative duration -5m0s") {
		t.Errorf("check with LAVAVISOR_UPGRADE_SPREAD=-5m: exit %d\n%s", cmd.ProcessState.ExitCode(), b)
	}
	stateAfter, _ := os.ReadFile(filepath.Join(h.root(), "state.json"))
	if len(h.events("p1")) != 0 || h.currentTag() != "v6.2.5" || !bytes.Equal(stateBefore, stateAfter) {
		t.Errorf("a refused config changed something: p1 %q, current %s", h.events("p1"), h.currentTag())
	}
	if _, err := os.Stat(filepath.Join(h.root(), "lavavisor.sock")); err == nil {
		t.Error("control socket left")
	}
}
