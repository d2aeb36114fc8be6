package chain

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The pace of SPEC §8: fast from voting_end - max(30 s, 2 blocks) until the
// proposal left the voting period and the versions were read once after, at
// most 10 minutes past the end; the usual interval otherwise.
func TestPollerPaceAroundVotingEnd(t *testing.T) {
	cur := mustVersions(t, "6.2.5", "6.2.5", "6.2.5", "6.2.5")
	end := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	target := "6.3.0"
	prop := Proposal{ID: 11, VotingEnd: end, Changes: []VersionChange{{ProviderTarget: &target}}}
	bad := "../x"
	hostile := Proposal{ID: 12, VotingEnd: end.Add(-time.Minute), Changes: []VersionChange{{ProviderTarget: &bad}}}
	p := NewPoller(&stepSource{}, PollerOptions{Interval: 5 * time.Second, Proposals: true})
	p.mu.Lock()
	p.watch(ProposalsRead{Proposals: []Proposal{hostile, prop}, Current: cur})
	p.mu.Unlock()
	for _, tc := range []struct {
		at       time.Time
		interval time.Duration
		want     time.Duration
	}{
		{end.Add(-31 * time.Second), 5 * time.Second, 5 * time.Second},
		{end.Add(-30 * time.Second), 5 * time.Second, time.Second},
		{end.Add(-50 * time.Second), 30 * time.Second, time.Second}, // 2 blocks of 30 s
		{end.Add(9 * time.Minute), 5 * time.Second, time.Second},
		{end.Add(10 * time.Minute), 5 * time.Second, 5 * time.Second},
		{end, 200 * time.Millisecond, 200 * time.Millisecond}, // a block is shorter than a second
	} {
		if got := p.pace(tc.interval, tc.at); got != tc.want {
			t.Errorf("at end%+v, interval %s: wait %s, want %s", tc.at.Sub(end), tc.interval, got, tc.want)
		}
	}
	// It left the voting period: one more fast read, then the usual pace.
	p.mu.Lock()
	p.watch(ProposalsRead{Current: cur})
	p.mu.Unlock()
	if got := p.pace(5*time.Second, end.Add(time.Second)); got != time.Second {
		t.Errorf("the read after the proposal left: wait %s, want 1s", got)
	}
	if got := p.pace(5*time.Second, end.Add(2*time.Second)); got != 5*time.Second {
		t.Errorf("after that read: wait %s, want 5s", got)
	}
}

// A proposals read that fails is published with its reason and is not a
// failed poll; a good one is published with the versions it applies over.
func TestPollerReadsProposalsWithoutFailingThePoll(t *testing.T) {
	path := filepath.Join(t.TempDir(), "versions.yml")
	base := "provider_min: 6.2.5\nprovider_target: 6.2.5\nconsumer_min: 6.2.5\nconsumer_target: 6.2.5\n"
	if err := os.WriteFile(path, []byte(base+"proposals: [{id: 1}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := NewSource(Options{Nodes: "file://" + path})
	if err != nil {
		t.Fatal(err)
	}
	polls := make(chan error, 100)
	p := NewPoller(src, PollerOptions{Interval: 50 * time.Millisecond, Proposals: true, OnPoll: func(err error) { polls <- err }})
	reads := p.SubscribeProposals()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	select {
	case r := <-reads:
		if r.Err == nil || !strings.Contains(r.Err.Error(), "voting_end_time missing") {
			t.Fatalf("read: %+v, want the file's error", r)
		}
	case <-time.After(patience):
		t.Fatal("no proposals read published")
	}
	if err := <-polls; err != nil {
		t.Fatalf("the poll failed with the proposals: %v", err)
	}
	if err := os.WriteFile(path, []byte(base+"proposals: [{id: 1, provider_target: 6.3.0, voting_end_time: 2030-01-01T00:00:00Z}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(patience)
	for {
		select {
		case r := <-reads:
			if r.Err != nil {
				continue
			}
			if len(r.Proposals) != 1 || r.Current.ProviderTarget.String() != "6.2.5" {
				t.Fatalf("read: %+v", r)
			}
			return
		case <-deadline:
			t.Fatal("the good list was never published")
		}
	}
}
