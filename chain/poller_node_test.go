package chain

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/lavavisor/lavavisor/chain/chaintest"
)

// waitHits waits until the node has answered n more requests.
func waitHits(t *testing.T, node *fakeNode, n int64) {
	t.Helper()
	target := node.hits.Load() + n
	deadline := time.Now().Add(patience)
	for node.hits.Load() < target {
		if time.Now().After(deadline) {
			t.Fatalf("the poller stopped polling (%d requests)", node.hits.Load())
		}
		time.Sleep(time.Millisecond) // polling with a deadline, not synchronising
	}
}

// The poller against the fake CometBFT node: it publishes the recorded
// versions, then the governance change, and ignores a hostile answer, a
// flapping height and a syncing node, whatever the node does.
func TestPollerWithFakeNode(t *testing.T) {
	node := newFakeNode(t)
	log, hook := testLog()
	// No fault here hangs: a request timeout a busy machine could reach would
	// only replace the warnings looked for with timeouts.
	src := newTestSource(t, Options{Nodes: node.TCP(), RequestTimeout: time.Minute, Log: log})
	p := NewPoller(src, PollerOptions{Interval: 2 * time.Millisecond, MaxBackoff: 4 * time.Millisecond, Log: log})
	ch := p.Subscribe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	s := receive(t, ch)
	wantVersions(t, s.Versions, "provider 5.5.1..6.2.5, consumer 5.5.1..6.2.5")
	if s.Height != 39 || s.ChainID != "lava" {
		t.Fatalf("first: %+v", s)
	}
	// Governance: 6.2.6, recorded at height 99.
	node.Set(func(s *chaintest.State) {
		s.Params = recordedValue(t, "abci_query_protocol_params_after_6.2.6.json")
		s.Height = 99
	})
	if s = receive(t, ch); s.Height != 99 || s.Versions.ConsumerTarget.String() != "6.2.6" {
		t.Fatalf("change: %+v", s)
	}
	// A lower height with other versions, a hostile version, a syncing node,
	// each for several polls: nothing is published.
	node.Set(func(s *chaintest.State) {
		s.Params, s.Height = recordedValue(t, "abci_query_protocol_params_at_height_90.json"), 90
	})
	waitHits(t, node, 6)
	// A query reads /status, then abci_query: each change is one set, and a
	// change to the versions waits until the query that read /status before
	// the node started catching up is over (the next request is another
	// query's, the poller's requests come one at a time). Otherwise, on a
	// busy machine, a query straddling two changes mixes their states and
	// publishes versions no state of the node had.
	hostile := node.versions("6.2.7", "5.5.1", "9.9.9; rm -rf /", "5.5.1")
	node.Set(func(s *chaintest.State) { s.Height, s.Params = 120, hostile })
	waitHits(t, node, 6)
	node.Set(func(s *chaintest.State) { s.CatchingUp = true })
	waitHits(t, node, 2)
	node.setVersions("6.2.7", "5.5.1", "6.2.7", "5.5.1")
	waitHits(t, node, 6)
	for _, mode := range []string{mode500, modeGarbage, modeHuge} {
		node.setMode(mode)
		waitHits(t, node, 3)
	}
	nothing(t, ch)
	node.setMode("")
	node.Set(func(s *chaintest.State) { s.CatchingUp = false })
	if s = receive(t, ch); s.Height != 120 || s.Versions.ProviderTarget.String() != "6.2.7" {
		t.Fatalf("after the faults: %+v", s)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(patience):
		t.Fatal("Run did not stop")
	}
	var warned []string
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel {
			warned = append(warned, e.Data[logrus.ErrorKey].(error).Error())
		}
	}
	all := strings.Join(warned, "\n")
	for _, want := range []string{`consumer_target: invalid version "9.9.9; rm -rf /"`, "is catching up", "500 Internal Server Error", "exceeds the limit"} {
		if !strings.Contains(all, want) {
			t.Errorf("no warning with %q in:\n%s", want, all)
		}
	}
}
