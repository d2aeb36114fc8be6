package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// maxSocketPath is the longest path a unix socket can be bound to on Linux:
// sun_path holds 108 bytes, the last one for the terminating NUL.
const maxSocketPath = 107

// statusTimeout bounds one status exchange, on both sides: a client that
// connects and says nothing must not hold a server goroutine for ever.
const statusTimeout = 5 * time.Second

// socket is the unix socket `lavavisor status` asks. One request line
// ("status"), one JSON answer, then the connection is closed.
type socket struct {
	path  string
	ln    *net.UnixListener
	conns sync.WaitGroup
}

// ErrSocketPath says that the home is too deep for a unix socket.
func ErrSocketPath(path string) error {
	return fmt.Errorf("control socket path %s is %d bytes long, over the %d-byte limit of a unix socket path: use a shorter --directory",
		path, len(path), maxSocketPath)
}

// listen binds the socket under a temporary name, makes it 0600 and
// renames it into place: the socket is never reachable at its name with a
// wider mode, and a stale one is replaced atomically.
func listen(path string) (*socket, error) {
	if len(path) > maxSocketPath {
		return nil, ErrSocketPath(path)
	}
	tmp := path[:strings.LastIndexByte(path, '/')+1] + ".tmp.sock"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// The file is removed by close, under its final name.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return &socket{path: path, ln: ln}, nil
}

// serve answers requests until stop. Commands run with a context that ends
// only when serve is stopped: a client that disconnects does not cancel one.
func (c *socket) serve(report func() Report, handle Handler, log *logrus.Entry) {
	ctx, cancel := context.WithCancel(context.Background())
	// Deferred in this order: the commands still running are told to end
	// (LavaVisor is stopping), then waited for. Waiting first would wait
	// for ever on a command that waits for a stopped upgrader.
	defer c.conns.Wait()
	defer cancel()
	for {
		conn, err := c.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of file descriptors, say: the services matter more than
			// status, so wait and go on rather than end the run group.
			log.WithError(err).Warn("control socket: accept")
			time.Sleep(100 * time.Millisecond)
			continue
		}
		c.conns.Add(1)
		go func() {
			defer c.conns.Done()
			answer(ctx, conn, report, handle, log)
		}()
	}
}

func answer(ctx context.Context, conn net.Conn, report func() Report, handle Handler, log *logrus.Entry) {
	defer conn.Close()
	// The request must come at once; the answer may take as long as the
	// command does (a stop waits for stop-timeout).
	conn.SetReadDeadline(time.Now().Add(statusTimeout))
	line, err := bufio.NewReader(io.LimitReader(conn, 4096)).ReadString('\n')
	if err != nil && line == "" {
		return
	}
	conn.SetReadDeadline(time.Time{})
	enc := json.NewEncoder(conn)
	req, plain, err := decodeRequest(strings.TrimSpace(line))
	switch {
	case err != nil:
		conn.SetWriteDeadline(time.Now().Add(statusTimeout))
		err = enc.Encode(Response{Version: ProtocolVersion, Error: err.Error()})
	case plain:
		conn.SetWriteDeadline(time.Now().Add(statusTimeout))
		err = enc.Encode(report())
	case req.Command == CmdStatus:
		rep := report()
		conn.SetWriteDeadline(time.Now().Add(statusTimeout))
		err = enc.Encode(Response{Version: ProtocolVersion, OK: true, Status: &rep})
	case handle == nil:
		err = enc.Encode(Response{Version: ProtocolVersion, Error: "this instance takes no commands yet"})
	default:
		send := func(r Response) error {
			// No deadline: a follower paused with Ctrl-S blocks only its
			// own goroutine here (it keeps its cursor; the service never
			// waits), and a client that is gone makes the write fail.
			r.Version, r.More = ProtocolVersion, true
			conn.SetWriteDeadline(time.Time{})
			return enc.Encode(r)
		}
		resp := handle(ctx, req, send)
		resp.Version = ProtocolVersion
		conn.SetWriteDeadline(time.Now().Add(statusTimeout))
		err = enc.Encode(resp)
	}
	if err != nil {
		log.WithError(err).Debug("control socket: answer")
	}
}

func truncateRequest(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// stop ends serve; safe to call more than once.
func (c *socket) stop() { c.ln.Close() }

// close stops serving and removes the socket file.
func (c *socket) close() {
	c.ln.Close()
	os.Remove(c.path)
}
