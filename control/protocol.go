package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// ProtocolVersion is the version of the control socket's JSON protocol. A
// request is one JSON line; the answer is one JSON Response. The plain line
// "status" of older clients is still answered with a bare Report.
const ProtocolVersion = 1

// Commands of the control socket (SPEC §9).
const (
	CmdStatus   = "status"
	CmdRestart  = "service-restart"
	CmdStop     = "service-stop"
	CmdStart    = "service-start"
	CmdReload   = "reload"
	CmdUpgrade  = "upgrade"
	CmdRollback = "rollback"
	CmdLogs     = "logs"
)

// Request is one command.
type Request struct {
	Version  int      `json:"version"`
	Command  string   `json:"command"`
	Services []string `json:"services,omitempty"`
	All      bool     `json:"all,omitempty"`
	// Wait queues a command that would race an upgrade in progress instead
	// of refusing it.
	Wait bool `json:"wait,omitempty"`
	// WaitHealthy: a service restart or start is done once the new process
	// is healthy (SPEC §7), not only started.
	WaitHealthy bool `json:"wait_healthy,omitempty"`
	// Upgrade: To moves to that release; Force allows it below the minimum;
	// Follow drops an operator's pin.
	To     string `json:"to,omitempty"`
	Force  bool   `json:"force,omitempty"`
	Follow bool   `json:"follow,omitempty"`
	// Logs: Lines is how many of the last lines; Follow streams new ones.
	Lines int `json:"lines,omitempty"`
}

// Response answers a Request. Error is set when the command was not done.
// A logs request with Follow is answered by a stream of Responses, each
// with Lines (and Skipped when the follower fell behind).
type Response struct {
	Version int     `json:"version"`
	OK      bool    `json:"ok"`
	Error   string  `json:"error,omitempty"`
	Message string  `json:"message,omitempty"`
	Status  *Report `json:"status,omitempty"`
	Lines   []Line  `json:"lines,omitempty"`
	Skipped uint64  `json:"skipped,omitempty"`
	// More marks a streamed part (logs -f): the final answer follows.
	More bool `json:"more,omitempty"`
}

// Line is one logged line of a service.
type Line struct {
	Stream string `json:"stream"`
	At     string `json:"at"`
	Text   string `json:"text"`
}

// Handler carries out a command; send streams extra answers (logs -f) and
// fails once the client is gone. A command goes on when its client
// disconnects: ctx ends only when LavaVisor stops.
type Handler func(ctx context.Context, req Request, send func(Response) error) Response

// Done is a successful answer with a message.
func Done(msg string) Response { return Response{Version: ProtocolVersion, OK: true, Message: msg} }

// Failed is an answer saying why the command was not done.
func Failed(err error) Response {
	return Response{Version: ProtocolVersion, Error: err.Error()}
}

// ErrOlderInstance says the running instance predates the command protocol.
var ErrOlderInstance = errors.New("the running lavavisor is older than this one and answers only `status`: restart it with this version to use this command")

// decodeRequest reads a request line: JSON, or the plain "status" of an
// older client (plain is true then).
func decodeRequest(line string) (req Request, plain bool, err error) {
	if line == CmdStatus {
		return Request{Command: CmdStatus}, true, nil
	}
	if err := json.Unmarshal([]byte(line), &req); err != nil {
		return req, false, fmt.Errorf("unknown request %q; this instance answers \"status\" or a JSON request", truncateRequest(line))
	}
	if req.Version > ProtocolVersion {
		return req, false, fmt.Errorf("request of protocol version %d; this instance speaks version %d: use the lavavisor binary it runs", req.Version, ProtocolVersion)
	}
	return req, false, nil
}
