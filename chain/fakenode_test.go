package chain

import (
	"bytes"
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
	"sync/atomic"
	"testing"
)

// fakeNode is a CometBFT RPC server on 127.0.0.1 answering /status and
// /abci_query (JSON-RPC over POST, as the CometBFT client sends it, and over GET
// URIs) with the recorded responses of a real Lava node, in which a test can
// change the params value, the height, the chain id and the sync state.
type fakeNode struct {
	t   testing.TB
	srv *httptest.Server

	mu         sync.Mutex
	value      []byte // QueryParamsResponse bytes
	height     int64
	network    string
	catchingUp bool
	mode       string // "", "hang", "hang-abci", "500", "garbage", "huge", "huge-length", "no-protocol"
	specs      map[string][]byte
	proposals  [][]byte    // pages of QueryProposalsResponse; nil: no gov answer
	requests   chan string // method of each request, when a test listens

	hits atomic.Int64
}

// Modes of misbehaviour.
const (
	modeHang       = "hang"        // every request hangs until the client gives up
	modeHangABCI   = "hang-abci"   // /status answers, abci_query hangs
	mode500        = "500"         // HTTP 500 with an HTML body
	modeGarbage    = "garbage"     // HTTP 200, not JSON
	modeHuge       = "huge"        // an endless body, no Content-Length
	modeHugeLength = "huge-length" // a body announced as 1 GB
	modeNoProtocol = "no-protocol" // the node does not know the protocol module
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
	n := &fakeNode{t: t, network: "lava", height: 39, specs: map[string][]byte{}}
	n.value = recordedValue(t, "abci_query_protocol_params.json")
	n.specs["LAV1"] = recordedValue(t, "abci_query_spec_LAV1.json")
	n.srv = httptest.NewUnstartedServer(http.HandlerFunc(n.serve))
	t.Cleanup(n.srv.Close)
	return n
}

func (n *fakeNode) URL() string { return n.srv.URL }

// TCP is the node as operators write it, tcp://127.0.0.1:port.
func (n *fakeNode) TCP() string { return "tcp://" + strings.TrimPrefix(n.srv.URL, "http://") }

func (n *fakeNode) set(fn func(n *fakeNode)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	fn(n)
}

func (n *fakeNode) setVersions(pt, pm, ct, cm string) {
	b := n.versions(pt, pm, ct, cm)
	n.set(func(n *fakeNode) { n.value = b })
}

// versions is the abci_query value with these versions, for a set that changes
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
	n.set(func(n *fakeNode) { n.proposals = pages })
}

func (n *fakeNode) setHeight(h int64) { n.set(func(n *fakeNode) { n.height = h }) }
func (n *fakeNode) setMode(m string)  { n.set(func(n *fakeNode) { n.mode = m }) }

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

func recordedValue(t testing.TB, name string) []byte { return readABCI(t, name).Result.Response.Value }

// rpcRequest is what the CometBFT client POSTs.
type rpcRequest struct {
	ID     json.RawMessage            `json:"id"`
	Method string                     `json:"method"`
	Params map[string]json.RawMessage `json:"params"`
}

func (n *fakeNode) serve(w http.ResponseWriter, r *http.Request) {
	n.hits.Add(1)
	req, err := parseRPCRequest(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n.mu.Lock()
	mode, value, height, network, catching := n.mode, n.value, n.height, n.network, n.catchingUp
	spec := n.specs
	proposals := n.proposals
	notify := n.requests
	n.mu.Unlock()
	if notify != nil {
		select {
		case notify <- req.Method:
		default:
		}
	}

	switch {
	case mode == modeHang, mode == modeHangABCI && req.Method == "abci_query":
		<-r.Context().Done() // until the client gives up
		return
	case mode == mode500:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "<html><body>500 Internal Server Error</body></html>")
		return
	case mode == modeGarbage:
		io.WriteString(w, "\x00\xffnot json at all {{{")
		return
	case mode == modeHuge:
		io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(req.ID)+`,"result":"`)
		chunk := bytes.Repeat([]byte("A"), 64<<10)
		for i := 0; i < 1024; i++ { // 64 MiB unless the client stops reading
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		return
	case mode == modeHugeLength:
		w.Header().Set("Content-Length", strconv.Itoa(1<<30))
		io.WriteString(w, "{")
		return
	}

	var result json.RawMessage
	switch req.Method {
	case "status":
		result = n.statusResult(height, network, catching)
	case "abci_query":
		var path string
		json.Unmarshal(req.Params["path"], &path)
		if path == proposalsMethod && proposals != nil {
			result = n.proposalsResult(req.Params["data"], proposals, height)
			break
		}
		result = n.abciResult(mode, path, req.Params["data"], value, height, spec)
	default:
		http.Error(w, "unknown method "+req.Method, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":%s}`, req.ID, result)
}

func parseRPCRequest(r *http.Request) (rpcRequest, error) {
	var req rpcRequest
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			return req, err
		}
		if err := json.Unmarshal(body, &req); err != nil {
			return req, err
		}
		return req, nil
	}
	// GET /abci_query?path="/x"&data=0x0a04 as curl and the recordings use.
	req.ID = json.RawMessage("-1")
	req.Method = strings.TrimPrefix(r.URL.Path, "/")
	req.Params = map[string]json.RawMessage{}
	for k, v := range r.URL.Query() {
		s := v[0]
		if k == "data" {
			s = `"` + strings.TrimPrefix(s, "0x") + `"`
		}
		req.Params[k] = json.RawMessage(s)
	}
	return req, nil
}

// statusResult is the recorded /status with the test's height, chain id and sync state.
func (n *fakeNode) statusResult(height int64, network string, catching bool) json.RawMessage {
	var env struct {
		Result map[string]map[string]any `json:"result"`
	}
	dec := json.NewDecoder(bytes.NewReader(readFixture(n.t, "cometbft_status.json")))
	dec.UseNumber()
	if err := dec.Decode(&env); err != nil {
		n.t.Error(err)
	}
	env.Result["node_info"]["network"] = network
	env.Result["sync_info"]["latest_block_height"] = strconv.FormatInt(height, 10)
	env.Result["sync_info"]["catching_up"] = catching
	b, _ := json.Marshal(env.Result)
	return b
}

// abciResult is a recorded abci_query answer for the path asked.
func (n *fakeNode) abciResult(mode, path string, data json.RawMessage, value []byte, height int64, specs map[string][]byte) json.RawMessage {
	switch {
	case path == paramsMethod && mode != modeNoProtocol:
		return n.okResponse("abci_query_protocol_params.json", value, height)
	case path == specMethod:
		var hexData string
		json.Unmarshal(data, &hexData)
		raw, _ := hex.DecodeString(hexData)
		var req QueryGetSpecRequest
		req.Unmarshal(raw)
		if v, ok := specs[req.ChainID]; ok {
			return n.okResponse("abci_query_spec_LAV1.json", v, height)
		}
		return n.specNotFound(height)
	default: // what a node answers for a path it does not know
		return json.RawMessage(`{"response":` + string(readFixture(n.t, "abci_query_unknown_path.json")) + `}`)
	}
}

// proposalsResult answers the page the request's key asks for, in the
// envelope of the recorded Proposals answer.
func (n *fakeNode) proposalsResult(data json.RawMessage, pages [][]byte, height int64) json.RawMessage {
	var hexData string
	json.Unmarshal(data, &hexData)
	raw, _ := hex.DecodeString(hexData)
	var req QueryProposalsRequest
	req.Unmarshal(raw)
	if req.Status != statusVotingPeriod {
		n.t.Errorf("proposals asked with status %d, want %d", req.Status, statusVotingPeriod)
	}
	i := 0
	if len(req.Key) > 0 {
		i, _ = strconv.Atoi(strings.TrimPrefix(string(req.Key), "page"))
		i--
	}
	if i < 0 || i >= len(pages) {
		return json.RawMessage(`{"response":` + string(readFixture(n.t, "abci_query_unknown_path.json")) + `}`)
	}
	return n.okResponse("gov/abci_query_gov_v1_proposals_voting_legacy.json", pages[i], height)
}

func (n *fakeNode) okResponse(fixture string, value []byte, height int64) json.RawMessage {
	var env struct {
		Result struct {
			Response map[string]any `json:"response"`
		} `json:"result"`
	}
	dec := json.NewDecoder(bytes.NewReader(readFixture(n.t, fixture)))
	dec.UseNumber()
	if err := dec.Decode(&env); err != nil {
		n.t.Error(err)
	}
	env.Result.Response["value"] = base64.StdEncoding.EncodeToString(value)
	env.Result.Response["height"] = strconv.FormatInt(height, 10)
	b, _ := json.Marshal(env.Result)
	return b
}

// specNotFound is the ABCI form of the recorded REST error for a missing spec
// (testdata/rest_spec_LAV1_before_specs_added.http.txt: gRPC code 3, "not
// found"): Cosmos SDK 0.47's baseapp turns a gRPC InvalidArgument into
// sdkerrors.ErrInvalidRequest (code 18, codespace sdk) with the status text as log.
func (n *fakeNode) specNotFound(height int64) json.RawMessage {
	code, msg := recordedSpecError(n.t)
	if code != 3 {
		n.t.Errorf("recorded spec error code %d, want 3 (InvalidArgument)", code)
	}
	log := fmt.Sprintf("rpc error: code = InvalidArgument desc = %s: invalid request", msg)
	return json.RawMessage(fmt.Sprintf(`{"response":{"code":18,"log":%q,"info":"","index":"0","key":null,`+
		`"value":null,"proofOps":null,"height":"%d","codespace":"sdk"}}`, log, height))
}

// recordedSpecError reads the gRPC code and message of the recorded REST answer
// for a missing spec.
func recordedSpecError(t testing.TB) (int, string) {
	t.Helper()
	raw := strings.ReplaceAll(string(readFixture(t, "rest_spec_LAV1_before_specs_added.http.txt")), "\r\n", "\n")
	if !strings.HasPrefix(raw, "HTTP/1.1 400 ") {
		t.Fatalf("recorded spec error is not an HTTP 400: %.40q", raw)
	}
	_, body, ok := strings.Cut(raw, "\n\n")
	if !ok {
		t.Fatal("recorded HTTP answer has no body")
	}
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(body)), &e); err != nil {
		t.Fatal(err)
	}
	return e.Code, e.Message
}

// closedAddr is a 127.0.0.1 port that nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}
