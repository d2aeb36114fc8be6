package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Releases without a version command, or reporting an older number than
// their tag, install with a warning and cause no restart loop.
func TestUpgradeOddVersionReportsInstallWithoutLoop(t *testing.T) {
	rs := newReleaseServer(t)
	h := upgradeHome(t, rs, "")
	p := h.start("start")
	p.waitFor("started", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	h.versions("6.2.5", "6.2.8") // no version command
	p.waitFor("on 6.2.8", func() bool { return strings.Count(p.out.String(), "upgrade done") == 1 })
	h.versions("6.2.5", "6.2.9") // reports 6.1.0
	p.waitFor("on 6.2.9", func() bool { return strings.Count(p.out.String(), "upgrade done") == 2 })
	if h.lastStartVersion("p2") != "6.1.0" {
		t.Errorf("p2 runs %s, want the 6.2.9 build (reporting 6.1.0)", h.lastStartVersion("p2"))
	}
	for _, v := range []string{"6.2.8", "6.2.9"} {
		var m struct {
			ReportedVersion string `json:"reported_version"`
		}
		b, _ := os.ReadFile(filepath.Join(h.root(), "upgrades", "v"+v, "manifest.json"))
		json.Unmarshal(b, &m)
		want := map[string]string{"6.2.8": "", "6.2.9": "6.1.0"}[v]
		if m.ReportedVersion != want {
			t.Errorf("v%s reported_version %q, want %q", v, m.ReportedVersion, want)
		}
	}
	p.signal(syscall.SIGTERM)
	p.wait()
	starts := h.count("p1", "start")
	// Started again: it stays on 6.2.9, no download, no restart loop.
	p = h.start("start")
	p.waitFor("restarted", func() bool { return h.count("p1", "start") == starts+1 && h.count("p2", "start") == starts+1 })
	p.waitLog("polling the chain")
	p.waitLog("chain versions component=chain")
	p.signal(syscall.SIGTERM)
	p.wait()
	if h.count("p1", "start") != starts+1 || h.currentTag() != "v6.2.9" || rs.downloads("6.2.9") != 1 {
		t.Errorf("after restart: starts %d (want %d), current %s, downloads %d", h.count("p1", "start"), starts+1, h.currentTag(), rs.downloads("6.2.9"))
	}
}

// Two changes in quick succession: the latest wins, never two upgrades at once.
func TestUpgradeTwoQuickChangesLatestWins(t *testing.T) {
	h := upgradeHome(t, nil, "")
	h.place("6.2.6")
	h.place("6.2.7")
	p := h.start("start")
	p.waitFor("started", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	h.versions("6.2.5", "6.2.6")
	h.versions("6.2.5", "6.2.7")
	p.waitFor("both on 6.2.7", func() bool { return h.lastStartVersion("p1") == "6.2.7" && h.lastStartVersion("p2") == "6.2.7" })
	if h.currentTag() != "v6.2.7" {
		t.Errorf("current %s", h.currentTag())
	}
	// Never two processes of one service at once.
	for _, name := range []string{"p1", "p2"} {
		if live := h.live(name); live != 1 {
			t.Errorf("%s has %d live processes", name, live)
		}
	}
}

// The chain going away mid-upgrade does not stop the upgrade in progress,
// and services keep running while it is away.
func TestUpgradeChainDownDuringUpgrade(t *testing.T) {
	h := upgradeHome(t, nil, "min-uptime: 1s\n")
	h.place("6.2.6")
	p := h.start("start")
	p.waitFor("started", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	h.versions("6.2.5", "6.2.6")
	p.waitFor("p1 moved", func() bool { return h.lastStartVersion("p1") == "6.2.6" })
	os.Remove(filepath.Join(h.dir, "versions.yml"))
	p.waitLog("chain poll failed")
	p.waitFor("p2 moved", func() bool { return h.lastStartVersion("p2") == "6.2.6" })
	p.waitLog("upgrade done")
	if h.count("p1", "start") != 2 || h.count("p2", "start") != 2 {
		t.Errorf("starts %d %d", h.count("p1", "start"), h.count("p2", "start"))
	}
}

// SIGTERM in the middle of a rolling restart: a clean stop and a home that
// the next start resumes from.
func TestSIGTERMDuringRollingRestart(t *testing.T) {
	h := upgradeHome(t, nil, "min-uptime: 5s\n")
	h.place("6.2.6")
	p := h.start("start")
	p.waitFor("started", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	h.versions("6.2.5", "6.2.6")
	p.waitFor("p1 moved", func() bool { return h.lastStartVersion("p1") == "6.2.6" })
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, pid := range allPids(h) {
		if alive(pid) {
			t.Errorf("pid %d survived", pid)
		}
	}
	h.noTemp(t) // stopped: nothing may be left mid-write
	if !strings.Contains(p.out.String(), "upgrader stopped") {
		t.Error("no trace of the upgrader stopping")
	}
	p = h.start("start")
	p.waitLog("an upgrade was interrupted")
	p.waitFor("both on 6.2.6", func() bool { return h.lastStartVersion("p1") == "6.2.6" && h.lastStartVersion("p2") == "6.2.6" })
	assertConsistent(t, h, p, nil, "6.2.6")
}

// pod runs the same cycle for its one service, downloading by default.
func TestPodUpgrades(t *testing.T) {
	rs := newReleaseServer(t)
	h := newTestHome(t)
	h.place("6.2.5")
	h.link("6.2.5")
	h.versions("6.2.5", "6.2.5")
	t.Setenv("FAKE_RECORD", h.record("pod"))
	p := h.start("--node", "file://"+filepath.Join(h.dir, "versions.yml"), "--poll-interval", "100ms",
		"--download-url", rs.URL+"/v{version}/lavap-v{version}-{os}-{arch}", "--checksums-url", rs.URL+"/v{version}/sha256sum.txt",
		"pod", "--", "lavap", "rpcconsumer", "consumer.yml")
	p.waitFor("started", func() bool { return h.count("pod", "start") == 1 })
	h.versions("6.2.5", "6.2.6")
	p.waitFor("pod on 6.2.6", func() bool { return h.lastStartVersion("pod") == "6.2.6" })
	if rs.downloads("6.2.6") != 1 || h.currentTag() != "v6.2.6" {
		t.Errorf("downloads %d current %s", rs.downloads("6.2.6"), h.currentTag())
	}
}

// rolling: false restarts every service at once, not one min-uptime apart.
func TestUpgradeNotRollingRestartsAllAtOnce(t *testing.T) {
	h := upgradeHome(t, nil, "rolling: false\nmin-uptime: 5s\n")
	h.place("6.2.6")
	p := h.start("start")
	p.waitFor("started", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	h.versions("6.2.5", "6.2.6")
	p.waitFor("one moved", func() bool { return h.lastStartVersion("p1") == "6.2.6" || h.lastStartVersion("p2") == "6.2.6" })
	// Rolling would hold the second back for the first's 5 s min-uptime.
	if strings.Contains(p.out.String(), "upgrade done") {
		t.Fatal("upgrade done before min-uptime")
	}
	p.waitFor("both moved before any min-uptime passed", func() bool {
		return h.lastStartVersion("p1") == "6.2.6" && h.lastStartVersion("p2") == "6.2.6" || strings.Contains(p.out.String(), "upgrade done")
	})
	if strings.Contains(p.out.String(), "upgrade done") {
		t.Error("the second service moved only after the first's min-uptime: rolling")
	}
}

// After a rollback below the minimum, an error is logged every poll.
func TestBelowMinimumAfterRollbackLogsEveryPoll(t *testing.T) {
	h := upgradeHome(t, nil, crashingMinUptime)
	h.placeCrashing("6.2.6")
	p := h.start("start")
	p.waitFor("started", func() bool { return h.count("p1", "start") == 1 })
	h.versions("6.2.6", "6.2.6")
	p.waitLog("rolled back")
	const msg = "the running release is below the chain's minimum"
	n := strings.Count(p.out.String(), msg)
	p.waitFor("three more reminders", func() bool { return strings.Count(p.out.String(), msg) >= n+3 })
	if h.currentTag() != "v6.2.5" || h.live("p1") != 1 {
		t.Errorf("current %s, p1 live %d", h.currentTag(), h.live("p1"))
	}
}
