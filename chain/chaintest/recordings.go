package chaintest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The recorded answers a Node answers again, relative to its directory; see
// chain/testdata/README.md and chain/testdata/gov/README.md.
const (
	statusFile      = "cometbft_status.json"
	paramsFile      = "abci_query_protocol_params.json"
	specFile        = "abci_query_spec_LAV1.json"
	proposalsFile   = "gov/abci_query_gov_v1_proposals_voting_legacy.json"
	unknownPathFile = "abci_query_unknown_path.json"
	specErrorFile   = "rest_spec_LAV1_before_specs_added.http.txt"
)

// recordings are the recorded answers, read and checked once.
type recordings struct {
	status           json.RawMessage // the "result" of /status
	network, version string          // its node_info's
	params, spec     abciAnswer
	proposals        abciAnswer
	unknownPath      json.RawMessage // the "response" for a query path the node does not know
	specNotFound     string          // the gRPC message for a missing spec
}

// abciAnswer is a recorded abci_query answer: its "response", answered again
// with other values and heights, and the value and height recorded.
type abciAnswer struct {
	response json.RawMessage
	value    []byte
	height   int64
}

func readRecordings(dir string) (*recordings, error) {
	rec := &recordings{}
	for _, f := range []struct {
		name  string
		parse func([]byte) error
	}{
		{statusFile, rec.parseStatus},
		{paramsFile, func(b []byte) (err error) { rec.params, err = parseABCI(b); return err }},
		{specFile, func(b []byte) (err error) { rec.spec, err = parseABCI(b); return err }},
		{proposalsFile, func(b []byte) (err error) { rec.proposals, err = parseABCI(b); return err }},
		{unknownPathFile, rec.parseUnknownPath},
		{specErrorFile, rec.parseSpecError},
	} {
		b, err := os.ReadFile(filepath.Join(dir, f.name))
		if err != nil {
			return nil, err
		}
		if err := f.parse(b); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, f.name), err)
		}
	}
	return rec, nil
}

// RecordedValue is the response value of the recorded abci_query answer in
// the file at path: the protobuf bytes the node answered. It fails the test
// if the file is not one.
func RecordedValue(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("chaintest: %v", err)
	}
	a, err := parseABCI(b)
	if err != nil {
		t.Fatalf("chaintest: %s: %v", path, err)
	}
	return a.value
}

func parseABCI(b []byte) (abciAnswer, error) {
	var env struct {
		Result struct {
			Response json.RawMessage `json:"response"`
		} `json:"result"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return abciAnswer{}, err
	}
	if env.Result.Response == nil {
		return abciAnswer{}, errors.New("not an abci_query answer: no result.response")
	}
	var r struct {
		Value  []byte `json:"value"` // base64 in JSON
		Height string `json:"height"`
	}
	if err := json.Unmarshal(env.Result.Response, &r); err != nil {
		return abciAnswer{}, fmt.Errorf("result.response: %w", err)
	}
	h, err := strconv.ParseInt(r.Height, 10, 64)
	if err != nil {
		return abciAnswer{}, fmt.Errorf("result.response.height: %w", err)
	}
	a := abciAnswer{response: env.Result.Response, value: r.Value, height: h}
	if _, err := a.with(nil, 0); err != nil {
		return abciAnswer{}, err
	}
	return a, nil
}

// with is the recorded answer's "result" with this value and height.
func (a abciAnswer) with(value []byte, height int64) (json.RawMessage, error) {
	var resp map[string]any
	if err := decodeJSON(a.response, &resp); err != nil {
		return nil, fmt.Errorf("result.response: %w", err)
	}
	resp["value"] = base64.StdEncoding.EncodeToString(value)
	resp["height"] = strconv.FormatInt(height, 10)
	return json.Marshal(map[string]any{"response": resp})
}

// decodeJSON keeps numbers as they were written.
func decodeJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(v)
}

func (rec *recordings) parseStatus(b []byte) error {
	var env struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return err
	}
	var st struct {
		NodeInfo struct {
			Network string `json:"network"`
			Version string `json:"version"`
		} `json:"node_info"`
	}
	if err := json.Unmarshal(env.Result, &st); err != nil {
		return fmt.Errorf("result: %w", err)
	}
	rec.status, rec.network, rec.version = env.Result, st.NodeInfo.Network, st.NodeInfo.Version
	_, err := rec.statusResult(State{})
	return err
}

// statusResult is the recorded /status result with the state's chain id,
// height and sync state.
func (rec *recordings) statusResult(s State) (json.RawMessage, error) {
	var res map[string]map[string]any
	if err := decodeJSON(rec.status, &res); err != nil {
		return nil, fmt.Errorf("status result: %w", err)
	}
	if res["node_info"] == nil || res["sync_info"] == nil {
		return nil, errors.New("status result: no node_info or sync_info")
	}
	res["node_info"]["network"] = s.Network
	res["sync_info"]["latest_block_height"] = strconv.FormatInt(s.Height, 10)
	res["sync_info"]["catching_up"] = s.CatchingUp
	return json.Marshal(res)
}

// parseUnknownPath reads the "response" recorded for an unknown query path.
func (rec *recordings) parseUnknownPath(b []byte) error {
	var resp struct {
		Code int `json:"code"`
	}
	if err := json.Unmarshal(b, &resp); err != nil {
		return err
	}
	if resp.Code == 0 {
		return errors.New("not an error response (code 0)")
	}
	rec.unknownPath = b
	return nil
}

// parseSpecError reads the recorded REST answer for a missing spec: HTTP
// 400 with gRPC code 3 (InvalidArgument) and its message.
func (rec *recordings) parseSpecError(b []byte) error {
	raw := strings.ReplaceAll(string(b), "\r\n", "\n")
	if !strings.HasPrefix(raw, "HTTP/1.1 400 ") {
		return fmt.Errorf("not an HTTP 400: %.40q", raw)
	}
	_, body, ok := strings.Cut(raw, "\n\n")
	if !ok {
		return errors.New("HTTP answer with no body")
	}
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(body)), &e); err != nil {
		return err
	}
	if e.Code != 3 {
		return fmt.Errorf("gRPC code %d, want 3 (InvalidArgument)", e.Code)
	}
	rec.specNotFound = e.Message
	return nil
}

// specNotFoundResult is the ABCI form of the recorded missing-spec error:
// Cosmos SDK 0.47's baseapp turns a gRPC InvalidArgument into
// sdkerrors.ErrInvalidRequest (code 18, codespace sdk) with the status text
// as log.
func (rec *recordings) specNotFoundResult(height int64) json.RawMessage {
	log := fmt.Sprintf("rpc error: code = InvalidArgument desc = %s: invalid request", rec.specNotFound)
	return json.RawMessage(fmt.Sprintf(`{"response":{"code":18,"log":%q,"info":"","index":"0","key":null,`+
		`"value":null,"proofOps":null,"height":"%d","codespace":"sdk"}}`, log, height))
}

// unknownPathResult is the recorded answer for a query path the node does
// not know.
func (rec *recordings) unknownPathResult() json.RawMessage {
	return json.RawMessage(`{"response":` + string(rec.unknownPath) + `}`)
}
