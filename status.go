package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/oklog/run"
	"github.com/sirupsen/logrus"

	"github.com/lavavisor/lavavisor/chain"
	"github.com/lavavisor/lavavisor/config"
	"github.com/lavavisor/lavavisor/supervisor"
	"github.com/lavavisor/lavavisor/upgrade"
)

// maxSocketPath is the longest path a unix socket can be bound to on Linux:
// sun_path holds 108 bytes, the last one for the terminating NUL.
const maxSocketPath = 107

// statusTimeout bounds one status exchange, on both sides: a client that
// connects and says nothing must not hold a server goroutine for ever.
const statusTimeout = 5 * time.Second

// statusReport is the answer of the control socket, and `status --json`
// (SPEC §4). Chain and LastUpgrade are null when unknown.
type statusReport struct {
	Services    []serviceReport `json:"services"`
	Chain       *chainReport    `json:"chain"`
	LastUpgrade *upgradeReport  `json:"last_upgrade"`
}

type serviceReport struct {
	Name     string  `json:"name"`
	State    string  `json:"state"`
	PID      int     `json:"pid"`      // 0 when no process runs
	Release  string  `json:"release"`  // "" for a command service
	UptimeS  float64 `json:"uptime_s"` // of the running process; 0 when none
	Restarts int     `json:"restarts"`
	LastExit string  `json:"last_exit"` // "" when no process has ended yet
}

type chainReport struct {
	ProviderMin    string `json:"provider_min"`
	ProviderTarget string `json:"provider_target"`
	ConsumerMin    string `json:"consumer_min"`
	ConsumerTarget string `json:"consumer_target"`
	Height         int64  `json:"height"` // 0 for a file source
}

type upgradeReport struct {
	From   string    `json:"from"`
	To     string    `json:"to"`
	Result string    `json:"result"`
	At     time.Time `json:"at"`
}

// ops is what a running session shows to the outside: the control socket
// and, with --metrics-addr, the metrics and health endpoints. Both listen
// under the home lock, before the run group starts, so that a bad address is
// a startup error; watch and watchChain hand them the session's parts.
type ops struct {
	log     *logrus.Entry
	socket  *controlSocket
	metrics *metricsServer // nil without --metrics-addr
	home    home

	sup    *supervisor.Supervisor
	state  *upgrade.StateFile
	poller *chain.Poller // nil when no service runs lavap
	roles  map[string]config.Role
}

// openOps binds the control socket and the metrics address. The caller holds
// the home lock, so a socket file found there was left by an instance that
// is gone.
func openOps(h home, metricsAddr string, log *logrus.Entry) (*ops, error) {
	o := &ops{log: log, home: h}
	sock, err := listenControl(h.socket())
	if err != nil {
		return nil, err
	}
	o.socket = sock
	if metricsAddr != "" {
		if o.metrics, err = listenMetrics(metricsAddr, o); err != nil {
			sock.close()
			return nil, err
		}
	}
	return o, nil
}

// close removes the control socket and releases the metrics address.
func (o *ops) close() {
	o.socket.close()
	if o.metrics != nil {
		o.metrics.close()
	}
}

// watch hands over the running parts; call it before the run group starts.
func (o *ops) watch(sup *supervisor.Supervisor, st *upgrade.StateFile, cfg *config.Config, specs []supervisor.Spec) {
	o.sup, o.state, o.roles = sup, st, serviceRoles(cfg, specs)
}

// watchChain hands over the chain poller, when there is one.
func (o *ops) watchChain(p *chain.Poller) { o.poller = p }

// polled counts a chain poll (PollerOptions.OnPoll).
func (o *ops) polled(err error) {
	if o.metrics != nil {
		o.metrics.polled(err)
	}
}

// upgraded counts an upgrade's outcome (Upgrader.OnResult).
func (o *ops) upgraded(rec upgrade.UpgradeRecord, took time.Duration) {
	if o.metrics != nil {
		o.metrics.upgraded(rec, took)
	}
}

// addActors adds the status server and, when enabled, the metrics server.
func (o *ops) addActors(g *run.Group) {
	{
		// Status server.
		g.Add(func() error {
			o.socket.serve(o.report, o.log)
			o.log.Info("status server stopped")
			return nil
		}, func(error) {
			o.socket.stop()
		})
	}
	if o.metrics != nil {
		// Metrics server.
		g.Add(func() error {
			o.log.WithField("metrics_addr", o.metrics.addr()).Info("serving /metrics, /healthz and /readyz")
			err := o.metrics.serve()
			o.log.Info("metrics server stopped")
			return err
		}, func(error) {
			o.metrics.stop()
		})
	}
}

// serviceRoles maps each lavap service to its role: config.yml's when the
// service is there, else the one its arguments imply (pod).
func serviceRoles(cfg *config.Config, specs []supervisor.Spec) map[string]config.Role {
	roles := make(map[string]config.Role)
	for _, sp := range specs {
		if !sp.Upgradable {
			continue
		}
		if svc, ok := cfg.Service(sp.Name); ok && svc.Role != "" {
			roles[sp.Name] = svc.Role
		} else {
			roles[sp.Name] = config.RoleFromArgs(sp.Args)
		}
	}
	return roles
}

// chainSnapshot is the poller's last accepted answer, if any.
func (o *ops) chainSnapshot() (chain.Snapshot, bool) {
	if o.poller == nil {
		return chain.Snapshot{}, false
	}
	return o.poller.Last()
}

// report is the session's status now.
func (o *ops) report() statusReport {
	now := time.Now()
	rep := statusReport{Services: []serviceReport{}}
	for _, st := range o.sup.Status() {
		s := serviceReport{Name: st.Name, State: st.State, PID: st.PID, Release: st.Release, Restarts: st.Restarts, LastExit: st.LastExit}
		if st.PID != 0 && !st.Started.IsZero() {
			s.UptimeS = math.Round(now.Sub(st.Started).Seconds()*1000) / 1000
		}
		rep.Services = append(rep.Services, s)
	}
	if snap, ok := o.chainSnapshot(); ok {
		v := snap.Versions
		rep.Chain = &chainReport{
			ProviderMin: v.ProviderMin.String(), ProviderTarget: v.ProviderTarget.String(),
			ConsumerMin: v.ConsumerMin.String(), ConsumerTarget: v.ConsumerTarget.String(),
			Height: snap.Height,
		}
	}
	if lu := o.state.Get().LastUpgrade; lu != nil {
		rep.LastUpgrade = &upgradeReport{From: lu.From, To: lu.To, Result: lu.Result, At: lu.At}
	}
	return rep
}

// controlSocket is the unix socket `lavavisor status` asks. One request line
// ("status"), one JSON answer, then the connection is closed.
type controlSocket struct {
	path  string
	ln    *net.UnixListener
	conns sync.WaitGroup
}

// errSocketPath says that the home is too deep for a unix socket.
func errSocketPath(path string) error {
	return fmt.Errorf("control socket path %s is %d bytes long, over the %d-byte limit of a unix socket path: use a shorter --directory",
		path, len(path), maxSocketPath)
}

// listenControl binds the socket under a temporary name, makes it 0600 and
// renames it into place: the socket is never reachable at its name with a
// wider mode, and a stale one is replaced atomically.
func listenControl(path string) (*controlSocket, error) {
	if len(path) > maxSocketPath {
		return nil, errSocketPath(path)
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
	return &controlSocket{path: path, ln: ln}, nil
}

// serve answers requests until stop.
func (c *controlSocket) serve(report func() statusReport, log *logrus.Entry) {
	defer c.conns.Wait()
	for {
		conn, err := c.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of file descriptors, say: the services matter more than
			// status, so wait and go on rather than end the run group.
			log.WithError(err).Warn("status server: accept")
			time.Sleep(100 * time.Millisecond)
			continue
		}
		c.conns.Add(1)
		go func() {
			defer c.conns.Done()
			answer(conn, report, log)
		}()
	}
}

func answer(conn net.Conn, report func() statusReport, log *logrus.Entry) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(statusTimeout))
	line, err := bufio.NewReader(io.LimitReader(conn, 256)).ReadString('\n')
	if err != nil && line == "" {
		return
	}
	enc := json.NewEncoder(conn)
	switch req := strings.TrimSpace(line); req {
	case "status":
		err = enc.Encode(report())
	default:
		err = enc.Encode(map[string]string{"error": fmt.Sprintf("unknown request %q; this instance answers \"status\"", truncateRequest(req))})
	}
	if err != nil {
		log.WithError(err).Debug("status server: answer")
	}
}

func truncateRequest(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// stop ends serve; safe to call more than once.
func (c *controlSocket) stop() { c.ln.Close() }

// close stops serving and removes the socket file.
func (c *controlSocket) close() {
	c.ln.Close()
	os.Remove(c.path)
}

type statusCmd struct {
	JSON bool `name:"json" help:"Print the status as JSON."`
}

// Run asks the instance running on the home over its control socket.
func (c *statusCmd) Run(g *Globals) error {
	h := newHome(g.Directory)
	rep, err := askStatus(h)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lavavisor status:", err)
		return &exitError{code: 1}
	}
	if c.JSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printStatus(os.Stdout, rep, time.Now())
	return nil
}

// askStatus sends one status request to the instance of h.
func askStatus(h home) (statusReport, error) {
	var rep statusReport
	path := h.socket()
	if len(path) > maxSocketPath {
		return rep, errSocketPath(path)
	}
	conn, err := net.DialTimeout("unix", path, statusTimeout)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return rep, fmt.Errorf("no lavavisor is running for %s (no socket at %s)", h.root, path)
	case errors.Is(err, syscall.ECONNREFUSED):
		return rep, fmt.Errorf("no lavavisor is running for %s (the socket at %s is stale: the last instance did not stop cleanly)", h.root, path)
	case errors.Is(err, fs.ErrPermission):
		return rep, fmt.Errorf("cannot reach lavavisor at %s (%w): the socket is mode 0600, ask as the user that runs lavavisor", path, err)
	case err != nil:
		return rep, fmt.Errorf("cannot reach lavavisor at %s: %w", path, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(statusTimeout))
	if _, err := io.WriteString(conn, "status\n"); err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			err = op.Err
		}
		return rep, fmt.Errorf("ask lavavisor at %s: %w", path, err)
	}
	body, err := io.ReadAll(io.LimitReader(conn, 4<<20))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return rep, fmt.Errorf("lavavisor at %s did not answer within %s (busy or stuck?)", path, statusTimeout)
	}
	if err != nil {
		// A net.OpError names the socket by the name it was bound under,
		// which is not the one the user knows.
		var op *net.OpError
		if errors.As(err, &op) {
			err = op.Err
		}
		return rep, fmt.Errorf("read the answer of lavavisor at %s: %w", path, err)
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

// printStatus writes the report as a table for people.
func printStatus(w io.Writer, rep statusReport, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tSTATE\tPID\tRELEASE\tUPTIME\tRESTARTS\tLAST EXIT")
	for _, s := range rep.Services {
		pid, uptime := "-", "-"
		if s.PID != 0 {
			pid = fmt.Sprint(s.PID)
			uptime = (time.Duration(s.UptimeS) * time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", s.Name, s.State, pid, orDash(s.Release), uptime, s.Restarts, orDash(s.LastExit))
	}
	tw.Flush()
	fmt.Fprintln(w)
	if c := rep.Chain; c != nil {
		height := "height unknown (file source)"
		if c.Height > 0 {
			height = fmt.Sprintf("height %d", c.Height)
		}
		fmt.Fprintf(w, "chain: provider min %s target %s, consumer min %s target %s, %s\n",
			c.ProviderMin, c.ProviderTarget, c.ConsumerMin, c.ConsumerTarget, height)
	} else {
		fmt.Fprintln(w, "chain: not read yet")
	}
	if u := rep.LastUpgrade; u != nil {
		from := u.From
		if from == "" {
			from = "(none)"
		}
		fmt.Fprintf(w, "last upgrade: %s -> %s, %s, %s ago (%s)\n", from, u.To, u.Result,
			now.Sub(u.At).Round(time.Second), u.At.Local().Format(time.RFC3339))
	} else {
		fmt.Fprintln(w, "last upgrade: none")
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
