package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lavavisor/lavavisor/upgrade"
)

// Pre-fetch ahead of the vote (SPEC §8), end to end: a real LavaVisor, fake
// lavap processes, the file:// source listing proposals with the versions
// recorded in ../shared/fixtures/gov (proposal 13: MsgSetVersion 6.2.9 /
// 5.5.1, passed; 12: 6.3.1 / 6.2.5, rejected, and no such release exists),
// and the release server's request log. Decoding the same proposals from a
// node over RPC and gRPC is tested in chain/ (gov_test.go) on the recorded
// bytes.

// versionsWithProposals writes the file source: the four versions and a
// proposals list (YAML lines, already indented under "proposals:").
func (h *testHome) versionsWithProposals(pmin, ptarget, proposals string) {
	h.t.Helper()
	body := fmt.Sprintf("provider_min: %s\nprovider_target: %s\nconsumer_min: %s\nconsumer_target: %s\n", pmin, ptarget, pmin, ptarget)
	if proposals != "" {
		body += "proposals:\n" + proposals
	}
	tmp := filepath.Join(h.dir, "versions.yml.tmp")
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(h.dir, "versions.yml")); err != nil {
		h.t.Fatal(err)
	}
}

// proposal is one entry of the file source's proposals list.
func proposal(id int, pmin, ptarget string, end time.Time) string {
	return fmt.Sprintf("  - id: %d\n    provider_min: %s\n    provider_target: %s\n    consumer_min: %s\n    consumer_target: %s\n    voting_end_time: %s\n",
		id, pmin, ptarget, pmin, ptarget, end.UTC().Format(time.RFC3339))
}

// proposalStatus is proposal id in `status --json` (ok false when absent).
func proposalStatus(t *testing.T, h *testHome, id uint64) (upgrade.ProposalStatus, bool) {
	t.Helper()
	rep, _ := statusJSON(t, h.dir)
	for _, p := range rep.Proposals {
		if p.ID == id {
			return p, true
		}
	}
	return upgrade.ProposalStatus{}, false
}

func (h *testHome) releaseThere(version string) bool {
	_, err := os.Stat(filepath.Join(h.root(), "upgrades", "v"+version, "manifest.json"))
	return err == nil
}

// A proposal in voting: its release is fetched and verified before the
// versions change; when the vote passes, the services move with no request
// to the release server after the change.
func TestPrefetchBeforeTheVoteSwapsWithoutDownload(t *testing.T) {
	rs := newReleaseServer(t)
	h := upgradeHome(t, rs, "")
	p := h.start("start")
	p.waitFor("both on 6.2.5", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	end := time.Now().Add(time.Hour)
	h.versionsWithProposals("6.2.5", "6.2.5", proposal(13, "5.5.1", "6.2.9", end))
	p.waitFor("6.2.9 pre-fetched", func() bool { return h.releaseThere("6.2.9") })
	p.waitFor("status shows it ready", func() bool {
		ps, ok := proposalStatus(t, h, 13)
		return ok && ps.Prefetch == upgrade.PrefetchReady
	})
	ps, _ := proposalStatus(t, h, 13)
	if ps.Release != "6.2.9" || ps.ProviderTarget != "6.2.9" || ps.ProviderMin != "5.5.1" || !ps.VotingEnd.Equal(end.Truncate(time.Second)) {
		t.Errorf("status: %+v", ps)
	}
	if rs.downloads("6.2.9") != 1 || h.currentTag() != "v6.2.5" || h.count("p1", "start") != 1 || h.count("p2", "start") != 1 {
		t.Fatalf("the pre-fetch touched more than the releases folder: downloads %d, current %s, starts %q",
			rs.downloads("6.2.9"), h.currentTag(), h.events("p1"))
	}
	_, metrics := runLavavisor(t, "--directory", h.dir, "status")
	if !strings.Contains(metrics, "proposal 13: provider min 5.5.1 target 6.2.9") || !strings.Contains(metrics, "prefetch ready") {
		t.Errorf("status text lacks the proposal:\n%s", metrics)
	}

	// The vote passes: the chain's versions are what it set, the proposal
	// has left the voting period.
	before := rs.requests()
	h.versionsWithProposals("5.5.1", "6.2.9", "")
	// The fake 6.2.9 reports 6.1.0, as real releases lag: count the starts.
	p.waitLog("upgrade done")
	p.waitFor("both moved", func() bool { return h.count("p1", "start") == 2 && h.count("p2", "start") == 2 })
	if h.currentTag() != "v6.2.9" || !strings.Contains(p.out.String(), "to=6.2.9") {
		t.Errorf("current %s after the vote", h.currentTag())
	}
	if after := rs.requests(); len(after) != len(before) {
		t.Errorf("requests to the release server after the change: %q", after[len(before):])
	}
	p.waitFor("status shows it passed", func() bool {
		ps, ok := proposalStatus(t, h, 13)
		return ok && strings.Contains(ps.Reason, "ended: passed")
	})
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
	h.noTemp(t)
}

// A 404 or a checksum failure for a proposal's release is a warning naming
// the proposal, the version and the voting end; nothing else changes, the
// services keep running; a hostile proposal is refused.
func TestPrefetchFailureWarnsAndChangesNothing(t *testing.T) {
	rs := newReleaseServer(t)
	rs.set(func(rs *releaseServer) { rs.badSum["6.2.7"] = true })
	h := upgradeHome(t, rs, "")
	p := h.start("start")
	p.waitFor("both on 6.2.5", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	end := time.Now().Add(time.Hour)
	h.versionsWithProposals("6.2.5", "6.2.5", proposal(12, "6.2.5", "6.3.1", end)+proposal(7, "6.2.5", "6.2.7", end.Add(time.Minute))+
		"  - id: 9\n    provider_target: ../../etc\n    voting_end_time: "+end.UTC().Format(time.RFC3339)+"\n")
	p.waitLog("pre-fetch failed")
	p.waitFor("both warnings", func() bool {
		out := p.out.String()
		return strings.Contains(out, "proposal=12") && strings.Contains(out, "version=6.3.1") && strings.Contains(out, "404") &&
			strings.Contains(out, "proposal=7") && strings.Contains(out, "sha256 mismatch") && strings.Contains(out, "voting_end="+end.UTC().Format(time.RFC3339))
	})
	p.waitFor("status shows both failed and the hostile one refused", func() bool {
		a, _ := proposalStatus(t, h, 12)
		b, _ := proposalStatus(t, h, 7)
		c, _ := proposalStatus(t, h, 9)
		return a.Prefetch == upgrade.PrefetchFailed && strings.Contains(a.Reason, "404") &&
			b.Prefetch == upgrade.PrefetchFailed && strings.Contains(b.Reason, "sha256") &&
			c.Prefetch == upgrade.PrefetchNotFollowed && strings.Contains(c.Reason, "invalid version")
	})
	if h.currentTag() != "v6.2.5" || h.count("p1", "start") != 1 || h.count("p2", "start") != 1 || h.live("p1") != 1 || h.live("p2") != 1 {
		t.Errorf("a failed pre-fetch changed something: current %s, p1 %q", h.currentTag(), h.events("p1"))
	}
	for _, v := range []string{"6.3.1", "6.2.7"} {
		if _, err := os.Stat(filepath.Join(h.root(), "upgrades", "v"+v)); err == nil {
			t.Errorf("a failed pre-fetch left v%s", v)
		}
	}
	// The retries of 6.2.7 keep downloading while the checksum is bad, so a
	// temporary file may be there at any instant; one left by each failed
	// attempt would pile up, and this would never hold.
	p.waitFor("no temporary file in the releases folder between retries", func() bool {
		return len(tempFilesUnder(filepath.Join(h.root(), "upgrades"))) == 0
	})
	// Retried with the §6.7 delay: once the server is fixed, it is fetched.
	rs.set(func(rs *releaseServer) { rs.badSum["6.2.7"] = false })
	p.waitFor("6.2.7 pre-fetched after the fix", func() bool { return h.releaseThere("6.2.7") })
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
	h.noTemp(t)
}

// A rejected proposal: the fast polling around its voting end stops, status
// shows that it ended, and the release pre-fetched for it is pruned first.
func TestPrefetchRejectedProposal(t *testing.T) {
	rs := newReleaseServer(t)
	h := upgradeHome(t, rs, "")
	// A slow usual pace, to see the fast one.
	cfg, _ := os.ReadFile(filepath.Join(h.root(), "config.yml"))
	h.config(strings.Replace(string(cfg), "poll-interval: 100ms", "poll-interval: 2s", 1))
	p := h.start("start")
	p.waitFor("both on 6.2.5", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	end := time.Now().Add(5 * time.Second)
	h.versionsWithProposals("6.2.5", "6.2.5", proposal(11, "6.2.5", "6.2.7", end))
	p.waitFor("6.2.7 pre-fetched", func() bool { return h.releaseThere("6.2.7") })
	p.waitLog("polling the versions fast")
	// Its voting ends with no change of the versions: rejected.
	p.waitFor("the voting end", func() bool { return time.Now().After(end) })
	h.versionsWithProposals("6.2.5", "6.2.5", "")
	p.waitLog("proposal ended without changing the chain's versions (rejected)")
	p.waitLog("pruned the release pre-fetched for a rejected proposal")
	p.waitLog("polling at the usual interval")
	if h.releaseThere("6.2.7") {
		t.Error("the rejected proposal's release was kept")
	}
	ps, ok := proposalStatus(t, h, 11)
	if !ok || !strings.Contains(ps.Reason, "ended: rejected") || !strings.Contains(ps.Reason, "pruned") {
		t.Errorf("status: %+v %v", ps, ok)
	}
	if h.currentTag() != "v6.2.5" || h.count("p1", "start") != 1 {
		t.Errorf("the rejected proposal changed something: %s %q", h.currentTag(), h.events("p1"))
	}
}

// A minimum change during a slow pre-fetch of another release: the upgrade
// cancels it and goes on at once, not after the download.
func TestPrefetchNeverDelaysARequiredUpgrade(t *testing.T) {
	rs := newReleaseServer(t)
	stuck := make(chan struct{})
	rs.set(func(rs *releaseServer) { rs.hold["6.2.7"] = stuck })
	defer close(stuck)
	h := upgradeHome(t, rs, "")
	p := h.start("start")
	p.waitFor("both on 6.2.5", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	h.versionsWithProposals("6.2.5", "6.2.5", proposal(20, "6.2.5", "6.2.7", time.Now().Add(time.Hour)))
	p.waitFor("the pre-fetch of 6.2.7 in flight", func() bool { return rs.downloads("6.2.7") == 1 })
	h.versionsWithProposals("6.2.6", "6.2.6", proposal(20, "6.2.5", "6.2.7", time.Now().Add(time.Hour)))
	p.waitLog("cancelling the pre-fetch of another release")
	p.waitFor("both on 6.2.6", func() bool { return h.lastStartVersion("p1") == "6.2.6" && h.lastStartVersion("p2") == "6.2.6" })
	select {
	case <-stuck:
		t.Fatal("the held download was released: the test proves nothing")
	default:
	}
	if h.releaseThere("6.2.7") {
		t.Error("the held download completed")
	}
}

// auto-download off with prefetch on: only a warning to place the release;
// prefetch is reloadable (off: no proposals read nor shown).
func TestPrefetchWithoutAutoDownloadWarnsAndReloads(t *testing.T) {
	h := upgradeHome(t, nil, "prefetch: true\n")
	p := h.start("start")
	p.waitFor("both on 6.2.5", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	end := time.Now().Add(time.Hour)
	h.versionsWithProposals("6.2.5", "6.2.5", proposal(13, "5.5.1", "6.2.9", end))
	p.waitLog("place v6.2.9 in " + filepath.Join(h.root(), "upgrades") + " before " + end.UTC().Format(time.RFC3339))
	p.waitFor("status says failed", func() bool {
		ps, _ := proposalStatus(t, h, 13)
		return ps.Prefetch == upgrade.PrefetchFailed && strings.Contains(ps.Reason, "auto-download is off")
	})
	// The operator places it: ready, nothing else done.
	h.place("6.2.9")
	p.waitFor("status says ready", func() bool {
		ps, _ := proposalStatus(t, h, 13)
		return ps.Prefetch == upgrade.PrefetchReady
	})
	if h.currentTag() != "v6.2.5" || h.count("p1", "start") != 1 {
		t.Errorf("a check changed something: %s %q", h.currentTag(), h.events("p1"))
	}
	cfg, _ := os.ReadFile(filepath.Join(h.root(), "config.yml"))
	h.config(strings.Replace(string(cfg), "prefetch: true\n", "prefetch: false\n", 1))
	p.signal(syscall.SIGHUP)
	p.waitLog("config.yml applied")
	p.waitFor("no proposals shown", func() bool {
		rep, _ := statusJSON(t, h.dir)
		return len(rep.Proposals) == 0
	})
}

// check shows the proposals and what a running LavaVisor would pre-fetch;
// proposals that cannot be read are a reason, never an error of check.
func TestCheckShowsProposals(t *testing.T) {
	rs := newReleaseServer(t)
	h := upgradeHome(t, rs, "")
	end := time.Now().Add(time.Hour)
	h.versionsWithProposals("6.2.5", "6.2.5", proposal(13, "5.5.1", "6.2.9", end)+proposal(14, "6.2.5", "6.2.5", end))
	code, out := runLavavisor(t, "--directory", h.dir, "check")
	if code != 0 || !strings.Contains(out, "proposal 13: provider min 5.5.1 target 6.2.9") || !strings.Contains(out, "release 6.2.9, prefetch fetching") ||
		!strings.Contains(out, "proposal 14:") || !strings.Contains(out, "prefetch not_needed") {
		t.Errorf("check: exit %d\n%s", code, out)
	}
	h.place("6.2.9")
	if _, out := runLavavisor(t, "--directory", h.dir, "check", "--json"); !strings.Contains(out, `"prefetch": "ready"`) || !strings.Contains(out, `"release": "6.2.9"`) {
		t.Errorf("check --json:\n%s", out)
	}
	h.versionsWithProposals("6.2.5", "6.2.5", "  - id: 1\n")
	code, out = runLavavisor(t, "--directory", h.dir, "check")
	if code != 0 || !strings.Contains(out, "proposals: unavailable (") || !strings.Contains(out, "voting_end_time missing") {
		t.Errorf("check with a bad proposals list: exit %d\n%s", code, out)
	}
	if rs.downloads("6.2.9") != 0 {
		t.Error("check downloaded")
	}
}

// lavavisor_proposal_prefetch: one series per proposal in voting with its
// release and state; dropped when the proposal ends.
func TestPrefetchMetric(t *testing.T) {
	rs := newReleaseServer(t)
	h := upgradeHome(t, rs, "")
	p := h.start("--metrics-addr", "127.0.0.1:0", "start")
	base := metricsURL(p)
	p.waitFor("both on 6.2.5", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	end := time.Now().Add(time.Hour)
	h.versionsWithProposals("6.2.5", "6.2.5", proposal(13, "5.5.1", "6.2.9", end)+proposal(12, "6.2.5", "6.3.1", end))
	p.waitFor("both series", func() bool {
		f := scrape(t, base)
		ready, _ := f.value("lavavisor_proposal_prefetch", map[string]string{"proposal": "13", "version": "6.2.9", "state": "ready"})
		failed, _ := f.value("lavavisor_proposal_prefetch", map[string]string{"proposal": "12", "version": "6.3.1", "state": "failed"})
		return ready == 1 && failed == 1
	})
	h.versionsWithProposals("6.2.5", "6.2.5", proposal(13, "5.5.1", "6.2.9", end))
	p.waitFor("the ended one's series dropped", func() bool {
		f := scrape(t, base)
		_, gone := f.value("lavavisor_proposal_prefetch", map[string]string{"proposal": "12", "version": "6.3.1", "state": "failed"})
		_, kept := f.value("lavavisor_proposal_prefetch", map[string]string{"proposal": "13", "version": "6.2.9", "state": "ready"})
		return !gone && kept
	})
}

// Pruning after an upgrade never removes a release a proposal in voting
// would need (SPEC §8), even one that keep-releases alone would remove.
func TestPruneKeepsTheReleaseOfAProposalInVoting(t *testing.T) {
	rs := newReleaseServer(t)
	h := upgradeHome(t, rs, "keep-releases: 1\n")
	// 6.2.9 is the newest (kept by keep-releases: 1), 6.2.8 neither newest
	// nor needed: pruned.
	for _, v := range []string{"6.2.6", "6.2.8", "6.2.9"} {
		h.place(v)
	}
	p := h.start("start")
	p.waitFor("both on 6.2.5", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	inVoting := proposal(21, "6.2.5", "6.2.7", time.Now().Add(time.Hour))
	h.versionsWithProposals("6.2.5", "6.2.5", inVoting)
	p.waitFor("6.2.7 pre-fetched", func() bool { return h.releaseThere("6.2.7") })
	// The target rises to 6.2.6 while the proposal for 6.2.7 is still in voting.
	h.versionsWithProposals("6.2.5", "6.2.6", inVoting)
	p.waitLog("upgrade done")
	p.waitLog("pruned old release")
	p.waitFor("6.2.8 pruned", func() bool {
		_, err := os.Stat(filepath.Join(h.root(), "upgrades", "v6.2.8"))
		return os.IsNotExist(err)
	})
	for _, v := range []string{"6.2.5", "6.2.6", "6.2.7", "6.2.9"} {
		if _, err := os.Stat(filepath.Join(h.root(), "upgrades", "v"+v, "lavap")); err != nil {
			t.Errorf("v%s pruned: %v", v, err)
		}
	}
	if n := rs.downloads("6.2.7"); n != 1 {
		t.Errorf("6.2.7 downloaded %d times", n)
	}
	if h.lastStartVersion("p1") != "6.2.6" || h.lastStartVersion("p2") != "6.2.6" {
		t.Errorf("services on %s, %s, want 6.2.6", h.lastStartVersion("p1"), h.lastStartVersion("p2"))
	}
}
