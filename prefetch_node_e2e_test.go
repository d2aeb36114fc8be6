package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/cometbft/cometbft/proto/tendermint/p2p"
	"github.com/cosmos/cosmos-sdk/client/grpc/cmtservice"
	"github.com/cosmos/cosmos-sdk/codec"
	codectypes "github.com/cosmos/cosmos-sdk/codec/types"
	grpctypes "github.com/cosmos/cosmos-sdk/types/grpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/lavavisor/lavavisor/chain"
	"github.com/lavavisor/lavavisor/upgrade"
)

// Pre-fetch ahead of the vote (SPEC §8) with a real LavaVisor polling a fake
// node, over CometBFT RPC and over gRPC, fed the bytes recorded from a real
// Lava node (chain/testdata, chain/testdata/gov): the protocol params, and the
// gov v1 Proposals answers in voting period for both forms of a version
// proposal — 11: legacy ParameterChangeProposal 6.3.0 / 5.5.1, 12:
// MsgSetVersion 6.3.1 / 6.2.5 — and once nothing is in voting.
//
// Both were rejected on the recording chain, so no params were recorded after
// them: the params after the vote are the recorded params decoded with the
// versions the recorded proposal carries (decoded too) and encoded again.

const (
	recordedParams = "chain/testdata/abci_query_protocol_params.json"
	paramsPath     = "/lavanet.lava.protocol.Query/Params"
	proposalsPath  = "/cosmos.gov.v1.Query/Proposals"
)

// recordedResult is the "result" of a recorded JSON-RPC answer, and the
// response value when it is an abci_query.
func recordedResult(t *testing.T, name string) (result json.RawMessage, value []byte) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var abci struct {
		Response struct {
			Value []byte `json:"value"`
		} `json:"response"`
	}
	json.Unmarshal(env.Result, &abci)
	return env.Result, abci.Response.Value
}

// nodeState is what the fake node answers: protobuf values, as a node's
// Params and Proposals queries encode them.
type nodeState struct {
	params, proposals []byte
	height            int64
}

// govNode is a fake Lava node on 127.0.0.1, over CometBFT RPC (JSON-RPC
// POST, as the CometBFT client sends it) or gRPC. A new state is applied at
// the start of the next poll (status, or GetSyncing over gRPC), so that the
// params and the proposals of one poll come from the same block, as a node
// answers them.
type govNode struct {
	t    *testing.T
	addr string // http://127.0.0.1:port or 127.0.0.1:port (gRPC)

	mu             sync.Mutex
	cur            nodeState
	next           *nodeState
	midPoll        *nodeState // applied at the next proposals read instead
	proposalsReads int
	paramsEnv      json.RawMessage // recorded envelopes the values are put in
	proposalsEnv   json.RawMessage
	statusEnv      json.RawMessage
}

func newGovNode(t *testing.T, st nodeState) *govNode {
	n := &govNode{t: t, cur: st}
	n.paramsEnv, _ = recordedResult(t, recordedParams)
	n.proposalsEnv, _ = recordedResult(t, "chain/testdata/gov/abci_query_gov_v1_proposals_voting_msgset.json")
	n.statusEnv, _ = recordedResult(t, "chain/testdata/cometbft_status.json")
	return n
}

// switchTo makes the next poll see st.
func (n *govNode) switchTo(st nodeState) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.next = &st
}

// newPoll applies a pending state and returns the current one.
func (n *govNode) newPoll() nodeState {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.next != nil {
		n.cur, n.next = *n.next, nil
	}
	return n.cur
}

func (n *govNode) state() nodeState {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cur
}

// switchMidPoll makes st the answer from the next proposals read on: the
// block that ends the vote lands between a poll's params read and its
// proposals read.
func (n *govNode) switchMidPoll(st nodeState) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.midPoll = &st
}

func (n *govNode) readProposals() nodeState {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.proposalsReads++
	if n.midPoll != nil {
		n.cur, n.midPoll = *n.midPoll, nil
	}
	return n.cur
}

func (n *govNode) proposalsAsked() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.proposalsReads
}

// serveRPC starts the CometBFT RPC side.
func (n *govNode) serveRPC() {
	srv := httptest.NewServer(http.HandlerFunc(n.rpc))
	n.t.Cleanup(srv.Close)
	n.addr = srv.URL
}

func (n *govNode) rpc(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params struct {
			Path string `json:"path"`
			Data string `json:"data"`
		} `json:"params"`
	}
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if r.Method != http.MethodPost || json.Unmarshal(body, &req) != nil {
		http.Error(w, "want a JSON-RPC POST", http.StatusBadRequest)
		return
	}
	var result json.RawMessage
	switch {
	case req.Method == "status":
		n.newPoll()
		result = n.statusEnv
	case req.Method == "abci_query" && req.Params.Path == paramsPath:
		st := n.state()
		result = withValue(n.t, n.paramsEnv, st.params, st.height)
	case req.Method == "abci_query" && req.Params.Path == proposalsPath:
		if data, _ := hex.DecodeString(req.Params.Data); !bytes.Equal(data, []byte{0x08, 0x02}) {
			n.t.Errorf("proposals asked with %x, want 0802 (voting period, first page)", data)
		}
		st := n.readProposals()
		result = withValue(n.t, n.proposalsEnv, st.proposals, st.height)
	default:
		http.Error(w, "unexpected "+req.Method+" "+req.Params.Path, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":%s}`, req.ID, result)
}

// withValue is a recorded abci_query result with this value and height.
func withValue(t *testing.T, env json.RawMessage, value []byte, height int64) json.RawMessage {
	var res struct {
		Response map[string]any `json:"response"`
	}
	dec := json.NewDecoder(bytes.NewReader(env))
	dec.UseNumber()
	if err := dec.Decode(&res); err != nil {
		t.Error(err)
	}
	res.Response["value"] = base64.StdEncoding.EncodeToString(value)
	res.Response["height"] = strconv.FormatInt(height, 10)
	b, _ := json.Marshal(res)
	return b
}

// rawMessage is a gRPC message sent or received as bytes.
type rawMessage []byte

func (m *rawMessage) Reset()                   { *m = nil }
func (m *rawMessage) String() string           { return "raw" }
func (*rawMessage) ProtoMessage()              {}
func (m *rawMessage) Marshal() ([]byte, error) { return *m, nil }
func (m *rawMessage) Size() int                { return len(*m) }
func (m *rawMessage) Unmarshal(b []byte) error { *m = append(rawMessage(nil), b...); return nil }

// grpcNode is the node's gRPC side: the protocol and gov query services,
// and the SDK's node service, with a Cosmos SDK node's server codec.
type grpcNode struct {
	cmtservice.UnimplementedServiceServer
	n *govNode
}

func (n *govNode) serveGRPC() {
	g := &grpcNode{n: n}
	s := grpc.NewServer(grpc.ForceServerCodec(codec.NewProtoCodec(codectypes.NewInterfaceRegistry()).GRPCCodec()))
	unary := func(service, method string, h func(ctx context.Context, req []byte) (any, error)) {
		s.RegisterService(&grpc.ServiceDesc{
			ServiceName: service,
			HandlerType: (*any)(nil),
			Methods: []grpc.MethodDesc{{
				MethodName: method,
				Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
					var req rawMessage
					if err := dec(&req); err != nil {
						return nil, err
					}
					return h(ctx, req)
				},
			}},
		}, g)
	}
	unary("lavanet.lava.protocol.Query", "Params", func(ctx context.Context, _ []byte) (any, error) {
		st := n.state()
		grpc.SetHeader(ctx, metadata.Pairs(grpctypes.GRPCBlockHeightHeader, strconv.FormatInt(st.height, 10)))
		v := rawMessage(st.params)
		return &v, nil
	})
	unary("cosmos.gov.v1.Query", "Proposals", func(ctx context.Context, req []byte) (any, error) {
		if !bytes.Equal(req, []byte{0x08, 0x02}) {
			return nil, status.Errorf(codes.InvalidArgument, "proposals asked with %x, want 0802", req)
		}
		st := n.readProposals()
		grpc.SetHeader(ctx, metadata.Pairs(grpctypes.GRPCBlockHeightHeader, strconv.FormatInt(st.height, 10)))
		v := rawMessage(st.proposals)
		return &v, nil
	})
	cmtservice.RegisterServiceServer(s, g)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		n.t.Fatal(err)
	}
	n.addr = l.Addr().String()
	go s.Serve(l)
	n.t.Cleanup(s.Stop)
}

// GetSyncing starts a poll over gRPC.
func (g *grpcNode) GetSyncing(context.Context, *cmtservice.GetSyncingRequest) (*cmtservice.GetSyncingResponse, error) {
	g.n.newPoll()
	return &cmtservice.GetSyncingResponse{Syncing: false}, nil
}

// GetNodeInfo answers the recorded node's network and version.
func (g *grpcNode) GetNodeInfo(context.Context, *cmtservice.GetNodeInfoRequest) (*cmtservice.GetNodeInfoResponse, error) {
	var st struct {
		NodeInfo struct {
			Network string `json:"network"`
			Version string `json:"version"`
		} `json:"node_info"`
	}
	json.Unmarshal(g.n.statusEnv, &st)
	return &cmtservice.GetNodeInfoResponse{DefaultNodeInfo: &p2p.DefaultNodeInfo{Network: st.NodeInfo.Network, Version: st.NodeInfo.Version}}, nil
}

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
	_, params := recordedResult(t, recordedParams)
	_, voting := recordedResult(t, "chain/testdata/gov/abci_query_gov_v1_proposals_voting_"+form+".json")
	_, empty := recordedResult(t, "chain/testdata/gov/abci_query_gov_v1_proposals_voting_empty_after_"+form+".json")
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
		node.serveRPC()
		h.config(strings.Replace(string(cfg), fileNode, "node: "+node.addr+"\n", 1))
	case "grpc":
		node.serveGRPC()
		// The RPC node is never asked: gRPC replaces it.
		h.config(strings.Replace(string(cfg), fileNode, "node: tcp://"+closedPort(t)+"\ngrpc-addr: "+node.addr+"\ngrpc-insecure: true\n", 1))
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

// closedPort is a 127.0.0.1 address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
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
	node.serveRPC()
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
