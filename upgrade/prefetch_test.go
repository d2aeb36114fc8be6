package upgrade

import (
	"strings"
	"testing"
	"time"

	"github.com/lavavisor/lavavisor/chain"
)

// Plan follows at most 3 proposals, earliest voting end first, one per
// release (a later one for a followed release shares it), and says why the
// others are not followed.
func TestPlanFollowsThreeReleasesEarliestFirst(t *testing.T) {
	s := func(v string) *string { return &v }
	end := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	prop := func(id uint64, target string, after time.Duration) chain.Proposal {
		return chain.Proposal{ID: id, VotingEnd: end.Add(after), Changes: []chain.VersionChange{{ProviderTarget: s(target), ConsumerTarget: s(target)}}}
	}
	cur, _ := chain.ParseVersion("6.2.5")
	read := chain.ProposalsRead{
		Current: chain.Versions{ProviderMin: cur, ProviderTarget: cur, ConsumerMin: cur, ConsumerTarget: cur},
		Proposals: []chain.Proposal{
			prop(1, "6.3.0", 0), prop(2, "6.3.0", time.Minute), prop(3, "6.2.5", 2*time.Minute),
			prop(4, "6.4.0", 3*time.Minute), prop(5, "../x", 4*time.Minute), prop(6, "6.5.0", 5*time.Minute),
			prop(7, "6.6.0", 6*time.Minute),
		},
	}
	got := Plan(PlanInput{Read: read, Roles: Roles{Provider: true}, Mode: ModeTarget, Running: cur, Now: end})
	want := []struct{ release, state, reason string }{
		{"6.3.0", "", ""},
		{"6.3.0", "", ""}, // shares the followed 6.3.0
		{"", PrefetchNotNeeded, "nothing to do"},
		{"6.4.0", "", ""},
		{"", PrefetchNotFollowed, `invalid version "../x"`},
		{"6.5.0", "", ""},
		{"6.6.0", PrefetchNotFollowed, "3 proposals with an earlier voting end are followed"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d statuses: %+v", len(got), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Release != w.release || g.Prefetch != w.state || !strings.Contains(g.Reason, w.reason) {
			t.Errorf("proposal %d: got release %q state %q reason %q, want %q %q ~%q", g.ID, g.Release, g.Prefetch, g.Reason, w.release, w.state, w.reason)
		}
	}
	// pin: nothing would follow any of them.
	pin, _ := chain.ParseVersion("6.2.5")
	for _, g := range Plan(PlanInput{Read: read, Roles: Roles{Provider: true}, Mode: ModeTarget, Pin: pin, Running: cur, Now: end}) {
		if g.Prefetch != PrefetchNotNeeded && g.Prefetch != PrefetchNotFollowed {
			t.Errorf("pinned: proposal %d would be pre-fetched: %+v", g.ID, g)
		}
	}
}
