// Package chaintest is a fake Lava node for tests, as net/http/httptest is a
// fake HTTP server: one node state, answered over CometBFT RPC (a Node is an
// http.Handler: serve it with httptest) and over gRPC (ServeGRPC), in the
// bytes a real Lava node answered when recorded (chain/testdata), with the
// params, specs, proposals, height, chain id and sync state a test sets.
//
// It lives under chain/ because it speaks the Cosmos SDK and CometBFT, whose
// imports stay in chain/. It cannot import package chain (chain's own tests
// import it), so it decodes the few requests it reads itself. Only tests may
// import it (TestOnlyTestsImportChaintest checks).
package chaintest

import (
	"context"
	"net"
	"sync"
	"testing"
)

// The methods a Node answers, as an OnRequest callback sees them. Over gRPC
// a request is named by its full method; over CometBFT RPC an abci_query by
// its query path (the same name as the gRPC method) and any other request by
// its RPC method.
const (
	// MethodStatus is CometBFT RPC's /status, where an RPC poll starts.
	MethodStatus = "status"
	// MethodGetSyncing is where a gRPC poll starts.
	MethodGetSyncing = "/cosmos.base.tendermint.v1beta1.Service/GetSyncing"
	MethodParams     = "/lavanet.lava.protocol.Query/Params"
	MethodSpec       = "/lavanet.lava.spec.Query/Spec"
	MethodProposals  = "/cosmos.gov.v1.Query/Proposals"
)

// State is what a Node answers.
type State struct {
	// Params is the QueryParamsResponse of the protocol module; nil: the
	// node has no protocol module (the recorded unknown-path answer).
	Params []byte
	// Specs holds the QueryGetSpecResponse of each chain id the spec module
	// has; any other is answered "not found", as Lava does.
	Specs map[string][]byte
	// Proposals are the pages of QueryProposalsResponse in voting period:
	// the first is asked for with no key, page i with the key "page<i>" (so
	// page i-1's NextKey). nil: the node has no gov answer.
	Proposals [][]byte
	// Height is the block height every answer carries.
	Height int64
	// Network is the chain id.
	Network string
	// CatchingUp is the sync state: catching_up in /status, GetSyncing.
	CatchingUp bool
}

// Node is a fake Lava node. Its methods are safe for concurrent use.
type Node struct {
	t   testing.TB
	rec *recordings

	mu        sync.Mutex
	state     State
	onRequest func(ctx context.Context, method string)
}

// New is a node answering from the recordings in dir (a chain/testdata:
// "testdata" for package chain's tests, "chain/testdata" for the root
// package's), in the recorded state: the recorded params at their height,
// the recorded LAV1 spec, the recorded chain id, not catching up, and no
// proposals. It fails the test if a recording cannot be read.
func New(t testing.TB, dir string) *Node {
	t.Helper()
	rec, err := readRecordings(dir)
	if err != nil {
		t.Fatalf("chaintest: %v", err)
	}
	return &Node{t: t, rec: rec, state: State{
		Params:  rec.params.value,
		Specs:   map[string][]byte{"LAV1": rec.spec.value},
		Height:  rec.params.height,
		Network: rec.network,
	}}
}

// Set changes the state under the node's lock: a request is answered from
// the state before or after fn, never from a mix of both.
func (n *Node) Set(fn func(s *State)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	fn(&n.state)
}

// OnRequest makes fn called with each request's context and method (see
// the Method constants) before the node answers it, and replaces any
// callback set before; nil removes it. The node reads its state after fn
// returns, so fn may change the answer with Set (switch the state as a
// poll starts or between two queries of one poll), count requests, or
// hold the request, as a hanging node, until ctx is done.
func (n *Node) OnRequest(fn func(ctx context.Context, method string)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.onRequest = fn
}

// request calls the OnRequest callback, outside the lock so that it can Set.
func (n *Node) request(ctx context.Context, method string) {
	n.mu.Lock()
	fn := n.onRequest
	n.mu.Unlock()
	if fn != nil {
		fn(ctx, method)
	}
}

// ClosedAddr is a 127.0.0.1 host:port that nothing listens on: a node that
// is down.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("chaintest: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
