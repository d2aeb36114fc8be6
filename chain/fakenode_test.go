package chain

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lavavisor/lavavisor/chain/chaintest"
)

// fakeNode is a fake Lava node (chaintest.Node: a test changes what it
// answers with Set) served over CometBFT RPC by newFakeNode or over gRPC by
// newFakeGRPC, with the faults only this package's tests inject.
type fakeNode struct {
	*chaintest.Node
	t    testing.TB
	srv  *httptest.Server // the CometBFT RPC server, from newFakeNode
	addr string           // the gRPC host:port, from newFakeGRPC
	hits atomic.Int64     // HTTP requests received

	mu       sync.Mutex
	mode     string      // a fault below, or ""
	noHeader bool        // gRPC: leave out x-cosmos-block-height, as a stripping proxy would
	requests chan string // the method of each request (chaintest's names), when a test listens
}

// Faults.
const (
	modeHang       = "hang"        // every request hangs until the client gives up
	modeHangABCI   = "hang-abci"   // /status answers, abci_query hangs
	mode500        = "500"         // RPC: HTTP 500 with an HTML body
	modeGarbage    = "garbage"     // RPC: HTTP 200, not JSON
	modeHuge       = "huge"        // RPC: an endless body, no Content-Length
	modeHugeLength = "huge-length" // RPC: a body announced as 1 GB
)

func newFakeNode(t testing.TB) *fakeNode {
	t.Helper()
	n := newUnstartedFakeNode(t)
	n.srv.Start()
	return n
}

// newFakeNodeTLS serves https:// with httptest's certificate.
func newFakeNodeTLS(t testing.TB) *fakeNode {
	t.Helper()
	n := newUnstartedFakeNode(t)
	n.srv.StartTLS()
	return n
}

func newUnstartedFakeNode(t testing.TB) *fakeNode {
	t.Helper()
	n := newFake(t)
	n.srv = httptest.NewUnstartedServer(http.HandlerFunc(n.serveHTTP))
	t.Cleanup(n.srv.Close)
	return n
}

// newFake is the node in the recorded state, not yet served.
func newFake(t testing.TB) *fakeNode {
	t.Helper()
	n := &fakeNode{Node: chaintest.New(t, "testdata"), t: t}
	n.OnRequest(n.onRequest)
	return n
}

func (n *fakeNode) URL() string { return n.srv.URL }

// TCP is the node as operators write it, tcp://127.0.0.1:port.
func (n *fakeNode) TCP() string { return "tcp://" + strings.TrimPrefix(n.srv.URL, "http://") }

func (n *fakeNode) setMode(m string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mode = m
}

// listen makes the node send the method of each request to ch, when ch has room.
func (n *fakeNode) listen(ch chan string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.requests = ch
}

func (n *fakeNode) setHeight(h int64) { n.Set(func(s *chaintest.State) { s.Height = h }) }

func (n *fakeNode) setVersions(pt, pm, ct, cm string) {
	b := n.versions(pt, pm, ct, cm)
	n.Set(func(s *chaintest.State) { s.Params = b })
}

// versions is the params value with these versions, for a set that changes
// more at once.
func (n *fakeNode) versions(pt, pm, ct, cm string) []byte {
	b, err := (&QueryParamsResponse{Params: Params{Version: ProtocolVersion{
		ProviderTarget: pt, ProviderMin: pm, ConsumerTarget: ct, ConsumerMin: cm,
	}}}).Marshal()
	if err != nil {
		n.t.Fatal(err)
	}
	return b
}

// setProposals makes the node list these pages of proposals in voting
// period: page i+1 is asked for with the key "page<i+1>".
func (n *fakeNode) setProposals(pages ...[]byte) {
	n.Set(func(s *chaintest.State) { s.Proposals = pages })
}

// onRequest tells a listening test, and holds the request in a hanging mode.
func (n *fakeNode) onRequest(ctx context.Context, method string) {
	n.mu.Lock()
	mode, notify := n.mode, n.requests
	n.mu.Unlock()
	if notify != nil {
		select {
		case notify <- method:
		default:
		}
	}
	if mode == modeHang || mode == modeHangABCI && method != chaintest.MethodStatus {
		<-ctx.Done() // until the client gives up
	}
}

// serveHTTP answers with the HTTP fault of the mode, or as the node.
func (n *fakeNode) serveHTTP(w http.ResponseWriter, r *http.Request) {
	n.hits.Add(1)
	n.mu.Lock()
	mode := n.mode
	n.mu.Unlock()
	switch mode {
	case mode500:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "<html><body>500 Internal Server Error</body></html>")
	case modeGarbage:
		io.WriteString(w, "\x00\xffnot json at all {{{")
	case modeHuge:
		io.WriteString(w, `{"jsonrpc":"2.0","id":-1,"result":"`)
		chunk := bytes.Repeat([]byte("A"), 64<<10)
		for i := 0; i < 1024; i++ { // 64 MiB unless the client stops reading
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	case modeHugeLength:
		w.Header().Set("Content-Length", strconv.Itoa(1<<30))
		io.WriteString(w, "{")
	default:
		n.Node.ServeHTTP(w, r)
	}
}

// readFixture reads a recorded file from testdata.
func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recordedABCI is the envelope of a recorded abci_query answer.
type recordedABCI struct {
	Result struct {
		Response struct {
			Code   int    `json:"code"`
			Log    string `json:"log"`
			Value  []byte `json:"value"` // base64 in JSON
			Height string `json:"height"`
		} `json:"response"`
	} `json:"result"`
}

func readABCI(t testing.TB, name string) recordedABCI {
	t.Helper()
	var r recordedABCI
	if err := json.Unmarshal(readFixture(t, name), &r); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return r
}

// recordedValue is the value of the recorded abci_query answer name in testdata.
func recordedValue(t testing.TB, name string) []byte {
	return chaintest.RecordedValue(t, filepath.Join("testdata", name))
}
