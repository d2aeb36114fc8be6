package chaintest

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// rpcRequest is a CometBFT JSON-RPC request.
type rpcRequest struct {
	ID     json.RawMessage
	Method string
	Path   string // abci_query's
	Data   []byte // abci_query's
}

// ServeHTTP answers CometBFT RPC as a node does: /status and abci_query,
// as JSON-RPC over POST (as the CometBFT client sends them) and as GET URIs
// (/abci_query?path="/x"&data=0x0a04, as curl and the recordings use).
func (n *Node) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, err := parseRPCRequest(r)
	if err != nil {
		http.Error(w, "chaintest: "+err.Error(), http.StatusBadRequest)
		return
	}
	method := req.Method
	if method == "abci_query" {
		method = req.Path
	}
	n.request(r.Context(), method)
	if r.Context().Err() != nil {
		return // the client gave up while the request was held
	}
	var result json.RawMessage
	switch req.Method {
	case "status":
		n.mu.Lock()
		result, err = n.rec.statusResult(n.state)
		n.mu.Unlock()
	case "abci_query":
		result, err = n.abciResult(req.Path, req.Data)
	default:
		http.Error(w, "chaintest: unknown method "+req.Method, http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":%s}`, req.ID, result)
}

func parseRPCRequest(r *http.Request) (rpcRequest, error) {
	var req rpcRequest
	params := map[string]json.RawMessage{}
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			return req, fmt.Errorf("read request: %w", err)
		}
		var msg struct {
			ID     json.RawMessage            `json:"id"`
			Method string                     `json:"method"`
			Params map[string]json.RawMessage `json:"params"`
		}
		if err := json.Unmarshal(body, &msg); err != nil {
			return req, fmt.Errorf("JSON-RPC request: %w", err)
		}
		req.ID, req.Method = msg.ID, msg.Method
		if msg.Params != nil {
			params = msg.Params
		}
	} else {
		req.ID = json.RawMessage("-1")
		req.Method = strings.TrimPrefix(r.URL.Path, "/")
		for k, v := range r.URL.Query() {
			s := v[0]
			if k == "data" {
				s = `"` + strings.TrimPrefix(s, "0x") + `"`
			}
			params[k] = json.RawMessage(s)
		}
	}
	if req.Method != "abci_query" {
		return req, nil
	}
	var data string
	if err := json.Unmarshal(params["path"], &req.Path); err != nil {
		return req, fmt.Errorf("abci_query path: %w", err)
	}
	if params["data"] != nil {
		if err := json.Unmarshal(params["data"], &data); err != nil {
			return req, fmt.Errorf("abci_query data: %w", err)
		}
	}
	d, err := hex.DecodeString(data)
	if err != nil {
		return req, fmt.Errorf("abci_query data: %w", err)
	}
	req.Data = d
	return req, nil
}

// abciResult is the result of an abci_query: a recorded answer with the
// state's value and height.
func (n *Node) abciResult(path string, data []byte) (json.RawMessage, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := &n.state
	switch path {
	case MethodParams:
		if s.Params != nil {
			return n.rec.params.with(s.Params, s.Height)
		}
	case MethodSpec:
		id, err := decodeSpecRequest(data)
		if err != nil {
			return nil, n.reject("QueryGetSpecRequest %x: %v", data, err)
		}
		if v, ok := s.Specs[id]; ok {
			return n.rec.spec.with(v, s.Height)
		}
		return n.rec.specNotFoundResult(s.Height), nil
	case MethodProposals:
		page, ok, err := n.page(data)
		if err != nil {
			return nil, err
		}
		if ok {
			return n.rec.proposals.with(page, s.Height)
		}
	}
	return n.rec.unknownPathResult(), nil // what a node answers for a path it does not know
}
