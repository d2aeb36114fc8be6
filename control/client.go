package control

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"
)

// dial connects to the control socket at path of the home root, naming the
// usual reasons it cannot.
func dial(path, root string) (net.Conn, error) {
	if len(path) > maxSocketPath {
		return nil, ErrSocketPath(path)
	}
	conn, err := net.DialTimeout("unix", path, statusTimeout)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("no lavavisor is running for %s (no socket at %s)", root, path)
	case errors.Is(err, syscall.ECONNREFUSED):
		return nil, fmt.Errorf("no lavavisor is running for %s (the socket at %s is stale: the last instance did not stop cleanly)", root, path)
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("cannot reach lavavisor at %s (%w): the socket is mode 0600, ask as the user that runs lavavisor", path, err)
	case err != nil:
		return nil, fmt.Errorf("cannot reach lavavisor at %s: %w", path, err)
	}
	return conn, nil
}

// AskStatus sends the plain status request, which every version answers.
func AskStatus(path, root string) (Report, error) {
	var rep Report
	conn, err := dial(path, root)
	if err != nil {
		return rep, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(statusTimeout))
	if _, err := io.WriteString(conn, "status\n"); err != nil {
		return rep, fmt.Errorf("ask lavavisor at %s: %w", path, opErr(err))
	}
	body, err := io.ReadAll(io.LimitReader(conn, 4<<20))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return rep, fmt.Errorf("lavavisor at %s did not answer within %s (busy or stuck?)", path, statusTimeout)
	}
	if err != nil {
		return rep, fmt.Errorf("read the answer of lavavisor at %s: %w", path, opErr(err))
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return rep, fmt.Errorf("lavavisor at %s: %s", path, e.Error)
	}
	if err := json.Unmarshal(body, &rep); err != nil {
		return rep, fmt.Errorf("lavavisor at %s answered something that is not a status (%w): %.200q", path, err, body)
	}
	return rep, nil
}

// Ask sends req and returns the final answer; each streamed answer before it
// (logs -f) goes to stream. There is no overall timeout: a command that
// waits for stops takes as long as they do.
func Ask(path, root string, req Request, stream func(Response)) (Response, error) {
	req.Version = ProtocolVersion
	conn, err := dial(path, root)
	if err != nil {
		return Response{}, err
	}
	defer conn.Close()
	line, _ := json.Marshal(req)
	conn.SetWriteDeadline(time.Now().Add(statusTimeout))
	if _, err := conn.Write(append(line, '\n')); err != nil {
		return Response{}, fmt.Errorf("ask lavavisor at %s: %w", path, opErr(err))
	}
	dec := json.NewDecoder(bufio.NewReader(conn))
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return Response{}, fmt.Errorf("lavavisor at %s closed the connection without an answer", path)
			}
			return Response{}, fmt.Errorf("read the answer of lavavisor at %s: %w", path, opErr(err))
		}
		var r Response
		if err := json.Unmarshal(raw, &r); err != nil {
			return Response{}, fmt.Errorf("lavavisor at %s answered something that is not a response (%w): %.200q", path, err, raw)
		}
		if r.Version == 0 {
			// An instance from before the protocol: it answers
			// {"error":"unknown request ..."} to anything but "status".
			return Response{}, ErrOlderInstance
		}
		if r.More {
			if stream != nil {
				stream(r)
			}
			continue
		}
		if !r.OK && r.Error == "" {
			r.Error = "failed without a reason"
		}
		return r, nil
	}
}

// opErr drops a net.OpError's wrapping: it names the socket by the name it
// was bound under (.tmp.sock), which is not the one the user knows.
func opErr(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Err
	}
	return err
}
