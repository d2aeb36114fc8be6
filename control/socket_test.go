package control

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// TestControlSocketProtocol talks to the server in-process: an unknown
// request gets a clear error, a silent client does not hold the server.
func TestControlSocketProtocol(t *testing.T) {
	dir, err := os.MkdirTemp("", "sock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "lavavisor.sock")
	os.WriteFile(path, []byte("stale"), 0o644) // replaced, whatever it was
	c, err := listen(path)
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	served := make(chan struct{})
	go func() {
		c.serve(func() Report {
			return Report{Services: []ServiceReport{{Name: "x", State: "running", PID: 7}}}
		}, nil, logrus.NewEntry(log))
		close(served)
	}()

	silent, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("reboot\n"))
	b, _ := io.ReadAll(conn)
	conn.Close()
	if !bytes.Contains(b, []byte(`unknown request \"reboot\"`)) || !bytes.Contains(b, []byte(`"version":1`)) {
		t.Errorf("unknown request answered %s", b)
	}

	rep, err := AskStatus(path, dir)
	if err != nil || len(rep.Services) != 1 || rep.Services[0].PID != 7 || rep.Chain != nil {
		t.Errorf("askStatus: %+v %v", rep, err)
	}
	c.stop()
	silent.Close() // the server waits for its connections; a silent one times out anyway
	select {
	case <-served:
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after stop")
	}
	c.close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket not removed: %v", err)
	}
}

// A newer client facing an instance from before the protocol (it answers
// every line but "status" with an error object) says so clearly.
func TestAskOlderInstance(t *testing.T) {
	dir, err := os.MkdirTemp("", "sock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "lavavisor.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		buf := make([]byte, 4096)
		conn.Read(buf)
		io.WriteString(conn, `{"error":"unknown request \"{\\\"version\\\":1...\"; this instance answers \"status\""}`+"\n")
	}()
	_, err = Ask(path, dir, Request{Command: CmdReload}, nil)
	if !errors.Is(err, ErrOlderInstance) || !strings.Contains(err.Error(), "older than this one") {
		t.Errorf("Ask of an older instance: %v", err)
	}
}

// A request of a newer protocol than the instance speaks is refused clearly.
func TestDecodeRequest(t *testing.T) {
	if _, plain, err := decodeRequest("status"); !plain || err != nil {
		t.Errorf("plain status: %v %v", plain, err)
	}
	if req, _, err := decodeRequest(`{"version":1,"command":"reload"}`); err != nil || req.Command != CmdReload {
		t.Errorf("reload: %+v %v", req, err)
	}
	if _, _, err := decodeRequest(`{"version":99,"command":"reload"}`); err == nil || !strings.Contains(err.Error(), "protocol version 99") {
		t.Errorf("version 99: %v", err)
	}
	if _, _, err := decodeRequest("reboot"); err == nil || !strings.Contains(err.Error(), `unknown request "reboot"`) {
		t.Errorf("reboot: %v", err)
	}
}
