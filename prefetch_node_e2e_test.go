package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/lavavisor/lavavisor/chain"
	"github.com/lavavisor/lavavisor/chain/chaintest"
	"github.com/lavavisor/lavavisor/upgrade"
)

// Pre-fetch ahead of the vote (SPEC §8) with a real LavaVisor polling a fake
// node (chain/chaintest), over CometBFT RPC and over gRPC, fed the bytes recorded from a real
// Lava node (chain/testdata, chain/testdata/gov): the protocol params, and the
// gov v1 Proposals answers in voting period for both forms of a version
// proposal — 11: legacy ParameterChangeProposal 6.3.0 / 5.5.1, 12:
// MsgSetVersion 6.3.1 / 6.2.5 — and once nothing is in voting.
//
// Both were rejected on the recording chain, so no params were recorded after
// them: the params after the vote are the recorded params decoded with the
// versions the recorded proposal carries (decoded too) and encoded again.

// chainRecordings holds the answers recorded from a real Lava node.
const chainRecordings = "chain/testdata"

// nodeState is what the fake node answers: protobuf values, as a node's
// Params and Proposals queries encode them.
type nodeState struct {
	params, proposals []byte
	height            int64
}

// apply makes the node answer st.
func (st nodeState) apply(s *chaintest.State) {
	s.Params, s.Proposals, s.Height = st.params, [][]byte{st.proposals}, st.height
}

// govNode is a fake Lava node on 127.0.0.1, over CometBFT RPC or gRPC. A new
// state is applied at the start of the next poll (status, or GetSyncing over
// gRPC), so that the params and the proposals of one poll come from the same
// block, as a node answers them.
type govNode struct {
	*chaintest.Node
	addr string // http://127.0.0.1:port or 127.0.0.1:port (gRPC)

	mu             sync.Mutex
	next           *nodeState // applied as the next poll starts
	midPoll        *nodeState // applied at the next proposals read instead
	proposalsReads int
}

func newGovNode(t *testing.T, st nodeState) *govNode {
	n := &govNode{Node: chaintest.New(t, chainRecordings)}
	n.Set(st.apply)
	n.OnRequest(n.request)
	return n
}

// request applies a pending state where it lands: as a poll starts, or
// at the proposals read.
func (n *govNode) request(_ context.Context, method string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch method {
	case chaintest.MethodStatus, chaintest.MethodGetSyncing:
		if n.next != nil {
			n.Set(n.next.apply)
			n.next = nil
		}
	case chaintest.MethodProposals:
		n.proposalsReads++
		if n.midPoll != nil {
			n.Set(n.midPoll.apply)
			n.midPoll = nil
		}
	}
}

// switchTo makes the next poll see st.
func (n *govNode) switchTo(st nodeState) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.next = &st
}

// switchMidPoll makes st the answer from the next proposals read on: the
// block that ends the vote lands between a poll's params read and its
// proposals read.
func (n *govNode) switchMidPoll(st nodeState) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.midPoll = &st
}

func (n *govNode) proposalsAsked() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proposalsReads
}

// serveRPC starts the CometBFT RPC side.
func (n *govNode) serveRPC(t *testing.T) {
	srv := httptest.NewServer(n.Node)
	t.Cleanup(srv.Close)
	n.addr = srv.URL
}

// serveGRPC starts the gRPC side.
func (n *govNode) serveGRPC() { n.addr = n.ServeGRPC() }

// voteCase is one recorded proposal: the node's answers before and after
// its vote, and the release it would need.
type voteCase struct {
	id            uint64
	form          string
	release       string // the provider target it sets: the release wanted
	before, after nodeState
	want          chain.Versions
}

// recordedVote reads a recorded proposals-in-voting answer with the
// recorded params, and builds the params as they would be had it passed.
func recordedVote(t *testing.T, form string) voteCase {
	t.Helper()
	params := chaintest.RecordedValue(t, chainRecordings+"/abci_query_protocol_params.json")
	voting := chaintest.RecordedValue(t, chainRecordings+"/gov/abci_query_gov_v1_proposals_voting_"+form+".json")
	empty := chaintest.RecordedValue(t, chainRecordings+"/gov/abci_query_gov_v1_proposals_voting_empty_after_"+form+".json")
	var pr chain.QueryParamsResponse
	if err := pr.Unmarshal(params); err != nil {
		t.Fatal(err)
	}
	current, err := pr.Versions()
	if err != nil {
		t.Fatal(err)
	}
	var props, none chain.QueryProposalsResponse
	if err := props.Unmarshal(voting); err != nil || len(props.Proposals) != 1 {
		t.Fatalf("recorded %s proposals: %v %+v", form, err, props.Proposals)
	}
	if err := none.Unmarshal(empty); err != nil || len(none.Proposals) != 0 {
		t.Fatalf("recorded empty answer after %s: %v %+v", form, err, none.Proposals)
	}
	p := props.Proposals[0]
	want, err := p.Versions(current)
	if err != nil {
		t.Fatal(err)
	}
	if want.ProviderTarget == current.ProviderTarget {
		t.Fatalf("recorded proposal %d does not raise the version: %s", p.ID, want)
	}
	pr.Params.Version.ProviderTarget, pr.Params.Version.ProviderMin = want.ProviderTarget.String(), want.ProviderMin.String()
	pr.Params.Version.ConsumerTarget, pr.Params.Version.ConsumerMin = want.ConsumerTarget.String(), want.ConsumerMin.String()
	after, err := pr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return voteCase{
		id: p.ID, form: p.Form, release: want.ProviderTarget.String(), want: want,
		before: nodeState{params: params, proposals: voting, height: 39},
		after:  nodeState{params: after, proposals: empty, height: 40},
	}
}

func TestPrefetchFromNodeRecordedProposals(t *testing.T) {
	for _, transport := range []string{"rpc", "grpc"} {
		for _, c := range []struct{ form, wantForm, release string }{
			{"msgset", chain.FormSetVersion, "6.3.1"},
			{"legacy", chain.FormParamChange, "6.3.0"},
		} {
			t.Run(transport+"/"+c.form, func(t *testing.T) {
				vc := recordedVote(t, c.form)
				if vc.form != c.wantForm || vc.release != c.release {
					t.Fatalf("recorded %s proposal: form %q release %s, want %q %s (chain/testdata/gov/README.md)", c.form, vc.form, vc.release, c.wantForm, c.release)
				}
				prefetchFromNode(t, transport, vc)
			})
		}
	}
}

// prefetchFromNode: the node lists the proposal in voting, the versions
// unchanged: its release is fetched and verified, nothing else changes;
// then the node answers the params after the vote and no proposal in
// voting: the services move with no request to the release server.
func prefetchFromNode(t *testing.T, transport string, vc voteCase) {
	rs := newReleaseServer(t)
	asset, err := os.ReadFile(filepath.Join(proposalBuilds, vc.release, "lavap"))
	if err != nil {
		t.Fatal(err)
	}
	rs.set(func(rs *releaseServer) { rs.override[vc.release] = asset })
	node := newGovNode(t, vc.before)
	h := upgradeHome(t, rs, "")
	cfg, _ := os.ReadFile(filepath.Join(h.root(), "config.yml"))
	fileNode := fmt.Sprintf("node: file://%s/versions.yml\n", h.dir)
	if !strings.Contains(string(cfg), fileNode) {
		t.Fatalf("upgradeHome's config has no %q", fileNode)
	}
	switch transport {
	case "rpc":
		node.serveRPC(t)
		h.config(strings.Replace(string(cfg), fileNode, "node: "+node.addr+"\n", 1))
	case "grpc":
		node.serveGRPC()
		// The RPC node is never asked: gRPC replaces it.
		h.config(strings.Replace(string(cfg), fileNode, "node: tcp://"+chaintest.ClosedAddr(t)+"\ngrpc-addr: "+node.addr+"\ngrpc-insecure: true\n", 1))
	}

	p := h.start("start")
	p.waitFor("both on 6.2.5", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	p.waitFor(vc.release+" pre-fetched", func() bool { return h.releaseThere(vc.release) })
	p.waitFor("status shows it ready", func() bool {
		ps, ok := proposalStatus(t, h, vc.id)
		return ok && ps.Prefetch == upgrade.PrefetchReady
	})
	ps, _ := proposalStatus(t, h, vc.id)
	if ps.Release != vc.release || ps.ProviderTarget != vc.want.ProviderTarget.String() || ps.ProviderMin != vc.want.ProviderMin.String() ||
		ps.ConsumerTarget != vc.want.ConsumerTarget.String() || ps.ConsumerMin != vc.want.ConsumerMin.String() {
		t.Errorf("status: %+v, want %s", ps, vc.want)
	}
	installed, err := os.ReadFile(filepath.Join(h.root(), "upgrades", "v"+vc.release, "lavap"))
	if err != nil || !bytes.Equal(installed, asset) {
		t.Fatalf("the pre-fetched release is not the served one (%v)", err)
	}
	if rs.downloads(vc.release) != 1 || h.currentTag() != "v6.2.5" || h.count("p1", "start") != 1 || h.count("p2", "start") != 1 {
		t.Fatalf("the pre-fetch touched more than the releases folder: downloads %d, current %s, p1 %q",
			rs.downloads(vc.release), h.currentTag(), h.events("p1"))
	}
	if node.proposalsAsked() == 0 {
		t.Fatal("the node was never asked for proposals")
	}

	// The vote passes: the next poll sees the params it set and nothing in
	// voting.
	before := rs.requests()
	node.switchTo(vc.after)
	p.waitLog("upgrade done")
	p.waitFor("both moved to "+vc.release, func() bool {
		return h.count("p1", "start") == 2 && h.count("p2", "start") == 2 &&
			h.lastStartVersion("p1") == vc.release && h.lastStartVersion("p2") == vc.release
	})
	if h.currentTag() != "v"+vc.release || !strings.Contains(p.out.String(), "to="+vc.release) {
		t.Errorf("current %s after the vote", h.currentTag())
	}
	p.waitFor("status shows it passed", func() bool {
		ps, ok := proposalStatus(t, h, vc.id)
		return ok && strings.Contains(ps.Reason, "ended: passed")
	})
	if after := rs.requests(); len(after) != len(before) {
		t.Errorf("requests to the release server after the change: %q", after[len(before):])
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
	if after := rs.requests(); len(after) != len(before) {
		t.Errorf("requests to the release server after the change: %q", after[len(before):])
	}
}

// The vote's end block lands between the versions read and the proposals
// read of one poll (a real node moves on between two queries; fast polling
// around the voting end makes it likely): the proposal, gone from the
// voting period while the versions read a moment before are the old ones,
// must not be judged rejected and its release pruned, to be downloaded
// again at once when the next poll sees the versions it set.
func TestPrefetchVoteEndsBetweenTheTwoReads(t *testing.T) {
	vc := recordedVote(t, "msgset")
	rs := newReleaseServer(t)
	asset, err := os.ReadFile(filepath.Join(proposalBuilds, vc.release, "lavap"))
	if err != nil {
		t.Fatal(err)
	}
	rs.set(func(rs *releaseServer) { rs.override[vc.release] = asset })
	node := newGovNode(t, vc.before)
	node.serveRPC(t)
	h := upgradeHome(t, rs, "")
	cfg, _ := os.ReadFile(filepath.Join(h.root(), "config.yml"))
	h.config(strings.Replace(string(cfg), fmt.Sprintf("node: file://%s/versions.yml\n", h.dir), "node: "+node.addr+"\n", 1))
	p := h.start("start")
	p.waitLog("polling the chain") // the control socket answers from here
	p.waitFor("status shows it ready", func() bool {
		ps, ok := proposalStatus(t, h, vc.id)
		return ok && ps.Prefetch == upgrade.PrefetchReady
	})
	before := rs.requests()
	node.switchMidPoll(vc.after)
	p.waitLog("upgrade done")
	p.waitFor("both moved to "+vc.release, func() bool {
		return h.lastStartVersion("p1") == vc.release && h.lastStartVersion("p2") == vc.release
	})
	p.waitFor("status shows it passed", func() bool {
		ps, ok := proposalStatus(t, h, vc.id)
		return ok && strings.Contains(ps.Reason, "ended: passed")
	})
	if after := rs.requests(); len(after) != len(before) {
		t.Errorf("requests to the release server after the change: %q", after[len(before):])
	}
}
