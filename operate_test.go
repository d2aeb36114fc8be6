package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The operator's commands of issue 13 (SPEC §9), against a real lavavisor.

func (h *testHome) ctl(args ...string) (int, string) {
	h.t.Helper()
	return runLavavisor(h.t, append([]string{"--directory", h.dir}, args...)...)
}

func (h *testHome) stateOf(name string) string {
	h.t.Helper()
	rep, _ := statusJSON(h.t, h.dir)
	for _, s := range rep.Services {
		if s.Name == name {
			return s.State
		}
	}
	return ""
}

func TestServiceRestartDuringUpgradeIsRefusedOrWaits(t *testing.T) {
	h := upgradeHome(t, nil, "min-uptime: 3s\n")
	h.place("6.2.6")
	p := h.start("start")
	p.waitFor("started", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	p.waitLog("polling the chain")
	h.versions("6.2.5", "6.2.6")
	p.waitFor("p1 moved", func() bool { return h.lastStartVersion("p1") == "6.2.6" })
	code, out := h.ctl("service", "restart", "p2")
	if code != 1 || !strings.Contains(out, "an upgrade is in progress") || !strings.Contains(out, "moved: p1") || !strings.Contains(out, "--wait") {
		t.Errorf("restart during the upgrade: exit %d\n%s", code, out)
	}
	code, out = h.ctl("service", "restart", "--wait", "p2")
	if code != 0 || !strings.Contains(out, "p2 restarted") {
		t.Fatalf("restart --wait: exit %d\n%s", code, out)
	}
	if !strings.Contains(p.out.String(), "upgrade done") {
		t.Error("restart --wait returned before the upgrade was done")
	}
	p.waitFor("p2 restarted after the upgrade", func() bool { return h.count("p2", "start") == 3 && h.lastStartVersion("p2") == "6.2.6" })
	code, out = h.ctl("service", "restart", "nope")
	if code != 1 || !strings.Contains(out, `unknown service "nope" (configured: p1, p2)`) {
		t.Errorf("restart of an unknown service: exit %d\n%s", code, out)
	}
	if code, _ := h.ctl("service", "restart"); code != 1 {
		t.Errorf("restart without names: exit %d", code)
	}
}

func TestHeldServiceStaysStoppedThroughUpgradeAndRestart(t *testing.T) {
	h := upgradeHome(t, nil, "")
	h.place("6.2.6")
	p := h.start("--metrics-addr", "127.0.0.1:0", "start")
	base := metricsURL(p)
	p.waitFor("started", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	p.waitLog("polling the chain")
	code, out := h.ctl("service", "stop", "p2")
	if code != 0 || !strings.Contains(out, "p2 stopped and held") {
		t.Fatalf("service stop: exit %d\n%s", code, out)
	}
	if h.live("p2") != 0 || h.stateOf("p2") != "held" {
		t.Fatalf("p2 not held: live %d, state %s", h.live("p2"), h.stateOf("p2"))
	}
	if code, body := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d %q with p2 held", code, body)
	}
	h.versions("6.2.5", "6.2.6")
	p.waitLog("upgrade done")
	if h.lastStartVersion("p1") != "6.2.6" || h.count("p2", "start") != 1 || h.live("p2") != 0 {
		t.Errorf("after the upgrade: p1 on %s, p2 %d starts, %d live", h.lastStartVersion("p1"), h.count("p2", "start"), h.live("p2"))
	}
	// Held across a restart of LavaVisor.
	p.signal(syscall.SIGTERM)
	p.wait()
	p = h.start("start")
	p.waitFor("p1 started again", func() bool { return h.count("p1", "start") == 3 })
	p.waitLog("polling the chain")
	if h.count("p2", "start") != 1 || h.stateOf("p2") != "held" {
		t.Fatalf("p2 not held after a restart: %d starts, state %s", h.count("p2", "start"), h.stateOf("p2"))
	}
	// And across a reload.
	p.signal(syscall.SIGHUP)
	p.waitLog("SIGHUP: config.yml applied")
	if h.stateOf("p2") != "held" {
		t.Errorf("p2 not held after a reload")
	}
	code, out = h.ctl("service", "start", "p2")
	if code != 0 || !strings.Contains(out, "p2 started") {
		t.Fatalf("service start: exit %d\n%s", code, out)
	}
	p.waitFor("p2 on the new release", func() bool {
		return h.count("p2", "start") == 2 && h.lastStartVersion("p2") == "6.2.6" && h.live("p2") == 1
	})
	if held := h.state(t)["held"]; held != nil {
		t.Errorf("state.json still holds %v", held)
	}
	if code, out := h.ctl("service", "start", "p2"); code != 1 || !strings.Contains(out, "not held") {
		t.Errorf("start of a running service: exit %d\n%s", code, out)
	}
}

func TestRollbackCommandHoldsAgainstTheChain(t *testing.T) {
	h := upgradeHome(t, nil, "")
	h.place("6.2.6")
	p := h.start("--metrics-addr", "127.0.0.1:0", "start")
	base := metricsURL(p)
	p.waitFor("started", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	p.waitLog("polling the chain")
	if code, out := h.ctl("rollback"); code != 1 || !strings.Contains(out, "no upgrade to roll back") {
		t.Errorf("rollback before any upgrade: exit %d\n%s", code, out)
	}
	h.versions("6.2.5", "6.2.6")
	p.waitLog("upgrade done")
	code, out := h.ctl("rollback")
	if code != 0 || !strings.Contains(out, "moved from 6.2.6 to 6.2.5") || !strings.Contains(out, "operator rollback") {
		t.Fatalf("rollback: exit %d\n%s", code, out)
	}
	if h.lastStartVersion("p1") != "6.2.5" || h.lastStartVersion("p2") != "6.2.5" || h.currentTag() != "v6.2.5" {
		t.Fatalf("not back on 6.2.5: p1 %s p2 %s current %s", h.lastStartVersion("p1"), h.lastStartVersion("p2"), h.currentTag())
	}
	st := h.state(t)
	if st["operator_pin"] != "6.2.5" {
		t.Errorf("operator_pin = %v", st["operator_pin"])
	}
	if r := st["bad"].(map[string]any)["6.2.6"].(map[string]any)["reason"]; r != "operator rollback" {
		t.Errorf("bad mark reason %v", r)
	}
	// The chain still says 6.2.6: several polls later, still on 6.2.5.
	var first float64
	p.waitFor("three more polls", func() bool {
		v, _ := scrape(t, base).value("lavavisor_chain_last_success_timestamp_seconds", nil)
		if first == 0 {
			first = v
		}
		return v > first+0.25
	})
	if h.count("p1", "start") != 3 || h.currentTag() != "v6.2.5" {
		t.Errorf("moved back by the chain: %d starts, current %s", h.count("p1", "start"), h.currentTag())
	}
	// --to clears the bad mark and pins; --follow gives control back.
	code, out = h.ctl("upgrade", "--to", "6.2.6")
	if code != 0 || !strings.Contains(out, "moved from 6.2.5 to 6.2.6") {
		t.Fatalf("upgrade --to 6.2.6: exit %d\n%s", code, out)
	}
	code, out = h.ctl("upgrade", "--follow")
	if code != 0 || !strings.Contains(out, "following the chain again") {
		t.Errorf("upgrade --follow: exit %d\n%s", code, out)
	}
	if st := h.state(t); st["operator_pin"] != nil {
		t.Errorf("operator_pin after --follow: %v", st["operator_pin"])
	}
}

func TestUpgradeToMissingOrBelowMinimumChangesNothing(t *testing.T) {
	h := upgradeHome(t, nil, "")
	p := h.start("start")
	p.waitFor("started", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	p.waitLog("polling the chain")
	before, _ := os.ReadFile(filepath.Join(h.root(), "state.json"))
	code, out := h.ctl("upgrade", "--to", "6.2.7")
	if code != 1 || !strings.Contains(out, "moving to 6.2.7 failed, nothing changed") || !strings.Contains(out, "no usable release") {
		t.Errorf("upgrade --to a missing release: exit %d\n%s", code, out)
	}
	h.versions("6.2.6", "6.2.6")
	h.place("6.2.6")
	p.waitFor("moved to the new minimum", func() bool { return h.lastStartVersion("p1") == "6.2.6" && h.lastStartVersion("p2") == "6.2.6" })
	p.waitLog("upgrade done")
	code, out = h.ctl("upgrade", "--to", "6.2.5")
	if code != 1 || !strings.Contains(out, "below the chain's minimum 6.2.6") || !strings.Contains(out, "--force") {
		t.Errorf("upgrade --to below the minimum: exit %d\n%s", code, out)
	}
	if h.currentTag() != "v6.2.6" || h.count("p1", "start") != 2 {
		t.Errorf("something moved: current %s, p1 starts %d", h.currentTag(), h.count("p1", "start"))
	}
	if st := h.state(t); st["operator_pin"] != nil {
		t.Errorf("a refused --to left a pin: %v (state before: %s)", st["operator_pin"], before)
	}
	if code, out := h.ctl("upgrade", "--to", "06.2.5"); code != 1 || !strings.Contains(out, "--to:") {
		t.Errorf("upgrade --to an invalid version: exit %d\n%s", code, out)
	}
	if code, _ := h.ctl("upgrade", "--to", "6.2.5", "--follow"); code != 2 {
		t.Errorf("--to with --follow: exit %d, want 2", code)
	}
}

func TestUpgradeDecidesNowAndReloadAnswers(t *testing.T) {
	h := newTestHome(t)
	h.place("6.2.5")
	h.link("6.2.5")
	h.versions("6.2.5", "6.2.6") // 6.2.6 is not there yet: the upgrade fails
	base := fmt.Sprintf("node: file://%s/versions.yml\npoll-interval: 30s\nmin-uptime: 300ms\nlink: none\nservices:\n", h.dir)
	h.config(base + h.service("p1", ""))
	p := h.start("start")
	p.waitLog("upgrade failed; services keep running")
	if !strings.Contains(p.out.String(), "retry_in=30s") {
		t.Fatalf("no 30 s retry delay:\n%s", p.out.String())
	}
	h.place("6.2.6")
	code, out := h.ctl("upgrade")
	if code != 0 || !strings.Contains(out, "upgraded from 6.2.5 to 6.2.6") {
		t.Fatalf("upgrade now: exit %d\n%s", code, out)
	}
	if h.lastStartVersion("p1") != "6.2.6" {
		t.Errorf("p1 on %s", h.lastStartVersion("p1"))
	}
	if code, out := h.ctl("upgrade"); code != 0 || !strings.Contains(out, "nothing to do") {
		t.Errorf("upgrade with nothing to do: exit %d\n%s", code, out)
	}
	h.config(base + h.service("p1", "") + h.service("p2", ""))
	code, out = h.ctl("reload")
	if code != 0 || strings.TrimSpace(out) != "applied" {
		t.Errorf("reload: exit %d %q", code, out)
	}
	p.waitFor("p2 added by the reload", func() bool { return h.count("p2", "start") == 1 && h.lastStartVersion("p2") == "6.2.6" })
	h.config(base + "  - name: p3\n    bogus: 1\n")
	code, out = h.ctl("reload")
	if code != 1 || !strings.Contains(out, "not applied") || !strings.Contains(out, "bogus") {
		t.Errorf("reload of a bad config: exit %d\n%s", code, out)
	}
	if h.live("p1") != 1 || h.live("p2") != 1 {
		t.Error("a refused reload changed the services")
	}
}

func TestLogsLastLinesAndFollow(t *testing.T) {
	h := newTestHome(t)
	h.place("6.2.5")
	h.link("6.2.5")
	h.versions("6.2.5", "6.2.5")
	h.config(fmt.Sprintf("node: file://%s/versions.yml\npoll-interval: 100ms\nlink: none\nservices:\n", h.dir) +
		h.service("p1", "", "FAKE_SPAM=100000"))
	p := h.start("start")
	last := fmt.Sprintf("%010d", 99999)
	p.waitFor("p1 logged its 100000 lines", func() bool {
		_, out := h.ctl("logs", "p1", "-n", "1")
		return strings.HasPrefix(out, last)
	})
	code, out := h.ctl("logs", "p1", "-n", "3")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[2], last) {
		t.Fatalf("logs -n 3: exit %d\n%s", code, out)
	}
	// A follower that never reads: the service is not slowed by it (its
	// next 10 MB pass), and a live follower sees a line written after it
	// started.
	stalled := stalledFollower(t, h, "p1")
	defer stalled.Close()
	follower := startLavavisor(t, "--directory", h.dir, "logs", "-f", "-n", "0", "p1")
	code, out = h.ctl("service", "restart", "p1")
	if code != 0 {
		t.Fatalf("restart: exit %d\n%s", code, out)
	}
	// The follower started after the old process's lines (-n 0): its last
	// spam line is the new process's. Lines between may be skipped when the
	// follower falls behind on a busy machine (it is told so): that is the
	// design, so only the last line, which the ring keeps, is asserted.
	follower.waitFor("the new process's last spam line", func() bool { return strings.Contains(follower.out.String(), last) })
	follower.signal(syscall.SIGINT)
	follower.wait()
	if code, out := h.ctl("logs", "nope"); code != 1 || !strings.Contains(out, `unknown service "nope"`) {
		t.Errorf("logs of an unknown service: exit %d\n%s", code, out)
	}
}

// stalledFollower asks to follow a service's log and never reads.
func stalledFollower(t *testing.T, h *testHome, name string) net.Conn {
	t.Helper()
	conn, err := net.Dial("unix", h.socketPath())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte(`{"version":1,"command":"logs","services":["` + name + `"],"follow":true,"lines":1000}` + "\n")); err != nil {
		t.Fatal(err)
	}
	return conn
}

// A stop with commands still waiting on the control socket (a follower, a
// queued upgrade) ends them and exits: the socket server no longer waits for
// them before telling them to end (found by the simulation, seed 492: no exit
// 30 s after SIGTERM).
func TestStopWithCommandsInFlight(t *testing.T) {
	h := upgradeHome(t, nil, "")
	p := h.start("start")
	p.waitFor("started", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	p.waitLog("polling the chain")
	follower := stalledFollower(t, h, "p1")
	defer follower.Close()
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Errorf("exit %d with a follower connected, want 0", code)
	}
}

// With every lavap service held, nothing can prove a new release: the move
// waits, `current` stays, and once the operator starts a service it starts
// on the release before and is moved on probation; a crashing release is
// then rolled back and marked bad (found by the simulation, seed 35: it was
// declared a success with nothing moved, and the held service then crashed
// on it for good). Both paths: the running upgrader, and the start-time move
// after a restart of LavaVisor.
func TestAllHeldServicesMoveOnlyWhenStarted(t *testing.T) {
	for _, atStart := range []bool{false, true} {
		t.Run(fmt.Sprintf("at_start=%v", atStart), func(t *testing.T) {
			h := newTestHome(t)
			h.place("6.2.5")
			h.link("6.2.5")
			h.placeCrashing("6.2.6")
			h.versions("6.2.5", "6.2.5")
			h.config(fmt.Sprintf("node: file://%s/versions.yml\npoll-interval: 100ms\nstop-timeout: 5s\nlink: none\n%sservices:\n%s", h.dir, crashingMinUptime, h.service("p1", "")))
			p := h.start("start")
			p.waitFor("started", func() bool { return h.count("p1", "start") == 1 })
			p.waitLog("polling the chain")
			if code, out := h.ctl("service", "stop", "p1"); code != 0 {
				t.Fatalf("service stop: exit %d\n%s", code, out)
			}
			if atStart {
				p.signal(syscall.SIGTERM)
				p.wait()
				h.versions("6.2.5", "6.2.6")
				p = h.start("start")
				p.waitLog("no lavap service started on the release linked at start")
			} else {
				h.versions("6.2.5", "6.2.6")
				p.waitLog("upgrade due, but no lavap service is running to move")
			}
			p.waitFor("current back on 6.2.5", func() bool { return h.currentTag() == "v6.2.5" })
			if h.count("p1", "start") != 1 {
				t.Fatalf("the held p1 started: %d starts", h.count("p1", "start"))
			}
			if lu := h.state(t)["last_upgrade"]; lu != nil {
				t.Errorf("a move nothing took part in was recorded: %v", lu)
			}
			if code, out := h.ctl("service", "start", "p1"); code != 0 {
				t.Fatalf("service start: exit %d\n%s", code, out)
			}
			p.waitLog("rolled back; the new release is marked bad")
			p.waitFor("p1 back on 6.2.5", func() bool {
				// Not a count of starts: the process started before the move
				// may be stopped before it writes its start.
				return lastAlive(h, "p1") && h.lastStartVersion("p1") == "6.2.5" && h.currentTag() == "v6.2.5"
			})
			if _, ok := h.state(t)["bad"].(map[string]any)["6.2.6"]; !ok {
				t.Errorf("6.2.6 not marked bad: %v", h.state(t)["bad"])
			}
		})
	}
}

// An operator's restart of a service on probation (here the start-time move's)
// starts its probation again; it used to leave the probation waiting for
// good, and the upgrader with it (found by the simulation, seed 322).
func TestRestartDuringProbationEndsIt(t *testing.T) {
	h := upgradeHome(t, nil, "min-uptime: 3s\n")
	h.place("6.2.6")
	h.versions("6.2.5", "6.2.6")
	p := h.start("start")
	p.waitLog("linked; services start on it")
	p.waitFor("p1 started on 6.2.6", func() bool { return h.lastStartVersion("p1") == "6.2.6" })
	if code, out := h.ctl("service", "restart", "p1"); code != 0 {
		t.Fatalf("service restart: exit %d\n%s", code, out)
	}
	p.waitLog("its probation starts again")
	p.waitLog("upgrade done: services stayed up on the release linked at start")
	// The upgrader is free again: the next change is acted on.
	h.place("6.2.7")
	h.versions("6.2.5", "6.2.7")
	p.waitFor("both on 6.2.7", func() bool { return h.lastStartVersion("p1") == "6.2.7" && h.lastStartVersion("p2") == "6.2.7" })
}
