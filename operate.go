package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/lavavisor/lavavisor/chain"
	"github.com/lavavisor/lavavisor/control"
	"github.com/lavavisor/lavavisor/supervisor"
	"github.com/lavavisor/lavavisor/upgrade"
)

// reloadRequest asks the reloader for a reload; reply, when set, gets its
// outcome (`lavavisor reload`).
type reloadRequest struct {
	via   string
	reply chan error
}

// heldServices are the services state.json says the operator holds stopped,
// among those configured.
func heldServices(st *upgrade.StateFile, specs []supervisor.Spec, log *logrus.Entry) []string {
	var held []string
	for _, name := range st.Get().Held {
		if slices.ContainsFunc(specs, func(sp supervisor.Spec) bool { return sp.Name == name }) {
			held = append(held, name)
			log.WithField("service", name).Warn("service held stopped by the operator (lavavisor service start " + name + " starts it)")
		}
	}
	return held
}

// commands carries out the operator's commands of the control socket
// (SPEC §9), each through the one owner of its kind of change: the
// supervisor for services, the upgrader for releases, the reloader for
// config.yml.
func (s *session) commands(sup *supervisor.Supervisor, up *upgrade.Upgrader, st *upgrade.StateFile, reloadc chan<- reloadRequest, upgradable bool) control.Handler {
	log := s.log.WithField("component", "control")
	return func(ctx context.Context, req control.Request, send func(control.Response) error) control.Response {
		log.WithFields(logrus.Fields{"command": req.Command, "services": strings.Join(req.Services, ","), "all": req.All, "to": req.To}).Info("operator's command")
		// Before the services are launched (the start-time chain read and
		// download) the command waits for them rather than answering that
		// no service is configured.
		select {
		case <-sup.Started():
		case <-ctx.Done():
			return control.Failed(errors.New("lavavisor is stopping"))
		}
		switch req.Command {
		case control.CmdRestart, control.CmdStop, control.CmdStart:
			return s.serviceCommand(ctx, req, sup, up, st, upgradable)
		case control.CmdReload:
			reply := make(chan error, 1)
			select {
			case reloadc <- reloadRequest{via: "reload", reply: reply}:
			case <-ctx.Done():
				return control.Failed(ctx.Err())
			}
			select {
			case err := <-reply:
				if err != nil {
					return control.Failed(fmt.Errorf("not applied, the running config is kept: %w", err))
				}
				return control.Done("applied")
			case <-ctx.Done():
				return control.Failed(ctx.Err())
			}
		case control.CmdUpgrade, control.CmdRollback:
			if !upgradable {
				return control.Failed(errors.New("no lavap service runs here: there is no release to move"))
			}
			op := upgrade.Op{Kind: upgrade.OpDecide, Force: req.Force}
			switch {
			case req.Command == control.CmdRollback:
				op.Kind = upgrade.OpRollback
			case req.Follow:
				op.Kind = upgrade.OpFollow
			case req.To != "":
				v, err := chain.ParseVersion(req.To)
				if err != nil {
					return control.Failed(fmt.Errorf("--to: %w", err))
				}
				op.Kind, op.To = upgrade.OpTo, v
			}
			msg, err := up.Do(ctx, op, req.Wait)
			if err != nil {
				return control.Failed(err)
			}
			return control.Done(msg)
		case control.CmdLogs:
			return s.logs(ctx, req, send, sup.Names())
		}
		return control.Failed(fmt.Errorf("unknown command %q", req.Command))
	}
}

// serviceCommand restarts, holds or starts services by name.
func (s *session) serviceCommand(ctx context.Context, req control.Request, sup *supervisor.Supervisor, up *upgrade.Upgrader, st *upgrade.StateFile, upgradable bool) control.Response {
	names, err := resolveNames(sup.Names(), req.Services, req.All)
	if err != nil {
		return control.Failed(err)
	}
	if upgradable {
		// A service change would race the upgrade's own restarts: refuse,
		// or with --wait, go once it is over.
		if desc, busy := up.Busy(); busy {
			if !req.Wait {
				return control.Failed(fmt.Errorf("%w (%s): try again later, or add --wait to queue it", upgrade.ErrBusy, desc))
			}
			if err := up.WaitIdle(ctx); err != nil {
				return control.Failed(err)
			}
		}
	}
	var done, failed []string
	for _, name := range names {
		var err error
		switch req.Command {
		case control.CmdRestart:
			var started supervisor.Started
			if started, err = sup.Restart(ctx, name, false); err == nil {
				if err = waitHealthy(ctx, req, started); err == nil {
					done = append(done, fmt.Sprintf("%s restarted (pid %d)%s", name, started.PID, healthySuffix(req, started)))
				}
			}
		case control.CmdStop:
			if err = sup.Hold(ctx, name); err == nil {
				done = append(done, name+" stopped and held")
			}
		case control.CmdStart:
			var started supervisor.Started
			if started, err = sup.Unhold(ctx, name); err == nil {
				if err = waitHealthy(ctx, req, started); err == nil {
					done = append(done, fmt.Sprintf("%s started (pid %d)%s", name, started.PID, healthySuffix(req, started)))
				}
			}
		}
		if err != nil {
			failed = append(failed, err.Error())
		}
	}
	if req.Command != control.CmdRestart {
		held := sup.Held()
		if err := st.Update(func(s *upgrade.State) { s.Held = held }); err != nil {
			failed = append(failed, fmt.Sprintf("record the held services in state.json (retried at every poll): %v", err))
		}
	}
	if len(failed) > 0 {
		msg := strings.Join(failed, "; ")
		if len(done) > 0 {
			msg = strings.Join(done, "; ") + "; but " + msg
		}
		return control.Failed(errors.New(msg))
	}
	return control.Done(strings.Join(done, "\n"))
}

// waitHealthy waits, with --wait-healthy, for the new process to be seen
// healthy within its start period; a service without a check is healthy
// once it runs.
func waitHealthy(ctx context.Context, req control.Request, st supervisor.Started) error {
	if !req.WaitHealthy || st.Health == nil {
		return nil
	}
	select {
	case <-st.Health.Healthy():
		return nil
	case <-st.Health.StartPeriodOver():
		select {
		case <-st.Health.Healthy():
			return nil
		default:
		}
		return fmt.Errorf("pid %d started but was not healthy within its start period (health: %s)", st.PID, st.Health.Status().LastError)
	case <-st.Early:
		return fmt.Errorf("pid %d exited before it was healthy", st.PID)
	case <-st.Gone:
		// Ended by itself, or stopped by another command or a reload: its
		// health checks stopped with it and its start period never ends.
		return fmt.Errorf("pid %d ended or was replaced before it was healthy", st.PID)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func healthySuffix(req control.Request, st supervisor.Started) string {
	if req.WaitHealthy && st.Health != nil {
		return ", healthy"
	}
	return ""
}

// resolveNames checks the names asked for against the configured services.
func resolveNames(configured, asked []string, all bool) ([]string, error) {
	if all {
		if len(asked) > 0 {
			return nil, errors.New("name services or give --all, not both")
		}
		return configured, nil
	}
	if len(asked) == 0 {
		return nil, errors.New("name at least one service, or give --all")
	}
	for _, n := range asked {
		if !slices.Contains(configured, n) {
			return nil, fmt.Errorf("unknown service %q (configured: %s)", n, strings.Join(configured, ", "))
		}
	}
	return asked, nil
}

// logs answers `lavavisor logs`: the last lines of a service from its ring
// and, with follow, every new one as it comes. A follower keeps its own
// cursor: one that reads slowly is told how many lines it skipped, and the
// service never waits for it.
func (s *session) logs(ctx context.Context, req control.Request, send func(control.Response) error, names []string) control.Response {
	if len(req.Services) != 1 {
		return control.Failed(errors.New("name one service"))
	}
	name := req.Services[0]
	if !slices.Contains(names, name) {
		return control.Failed(fmt.Errorf("unknown service %q (configured: %s)", name, strings.Join(names, ", ")))
	}
	ring := s.sink.Logs(name)
	n := req.Lines
	if n < 0 {
		n = 0
	}
	last := ring.Last(n)
	cursor := ring.Cursor()
	if len(last) > 0 {
		cursor = last[len(last)-1].Seq
	}
	if !req.Follow {
		return control.Response{Version: control.ProtocolVersion, OK: true, Lines: logLines(last)}
	}
	if len(last) > 0 {
		if err := send(control.Response{OK: true, Lines: logLines(last)}); err != nil {
			return control.Failed(err)
		}
	}
	for {
		select {
		case <-ring.Wait(cursor):
		case <-ctx.Done():
			return control.Done("lavavisor is stopping")
		}
		lines, next, skipped := ring.Since(cursor, 1000)
		cursor = next
		if err := send(control.Response{OK: true, Lines: logLines(lines), Skipped: skipped}); err != nil {
			return control.Failed(err) // the follower is gone
		}
	}
}

func logLines(in []supervisor.LogLine) []control.Line {
	out := make([]control.Line, len(in))
	for i, l := range in {
		out[i] = control.Line{Stream: l.Stream, At: l.At.UTC().Format(time.RFC3339Nano), Text: l.Text}
	}
	return out
}

type logsCmd struct {
	Name   string `arg:"" help:"The service."`
	Lines  int    `short:"n" default:"10" help:"How many of the last lines (the ring keeps at least 1 MiB per service)."`
	Follow bool   `short:"f" help:"Follow: print new lines as the service writes them, until Ctrl-C."`
	JSON   bool   `name:"json" help:"One JSON object per line: stream, at, text."`
}

func (c *logsCmd) Run(g *Globals) error {
	h := newHome(g.Directory)
	print := func(lines []control.Line, skipped uint64) {
		if skipped > 0 {
			fmt.Fprintf(os.Stderr, "lavavisor logs: %d lines skipped (this follower fell behind)\n", skipped)
		}
		enc := json.NewEncoder(os.Stdout)
		for _, l := range lines {
			if c.JSON {
				enc.Encode(l)
			} else {
				fmt.Println(l.Text)
			}
		}
	}
	req := control.Request{Command: control.CmdLogs, Services: []string{c.Name}, Lines: c.Lines, Follow: c.Follow}
	resp, err := control.Ask(h.socket(), h.root, req, func(r control.Response) { print(r.Lines, r.Skipped) })
	if err != nil {
		fmt.Fprintf(os.Stderr, "lavavisor logs: %v\n", err)
		return &exitError{code: 1}
	}
	if !resp.OK {
		fmt.Fprintf(os.Stderr, "lavavisor logs: %s\n", resp.Error)
		return &exitError{code: 1}
	}
	print(resp.Lines, resp.Skipped)
	return nil
}

// The operator's commands (SPEC §9).

type serviceCmd struct {
	Restart serviceRestartCmd `cmd:"" help:"Restart services (stop-signal, stop-timeout, then a fresh start); done when the new processes started."`
	Stop    serviceStopCmd    `cmd:"" help:"Stop services and hold them stopped (kept across reloads and restarts of LavaVisor) until 'service start'."`
	Start   serviceStartCmd   `cmd:"" help:"Start held services on the current release."`
}

type serviceRestartCmd struct {
	Names       []string `arg:"" optional:"" name:"name" help:"Services to restart."`
	All         bool     `help:"Every service."`
	Wait        bool     `help:"Wait for an upgrade in progress instead of refusing."`
	WaitHealthy bool     `name:"wait-healthy" help:"Done once each new process is healthy (its health check passes), not only started."`
}

type serviceStopCmd struct {
	Names []string `arg:"" optional:"" name:"name" help:"Services to stop and hold."`
	All   bool     `help:"Every service."`
	Wait  bool     `help:"Wait for an upgrade in progress instead of refusing."`
}

type serviceStartCmd struct {
	Names       []string `arg:"" name:"name" help:"Held services to start."`
	Wait        bool     `help:"Wait for an upgrade in progress instead of refusing."`
	WaitHealthy bool     `name:"wait-healthy" help:"Done once each new process is healthy, not only started."`
}

func (c *serviceRestartCmd) Run(g *Globals) error {
	return ask(g, control.Request{Command: control.CmdRestart, Services: c.Names, All: c.All, Wait: c.Wait, WaitHealthy: c.WaitHealthy})
}

func (c *serviceStopCmd) Run(g *Globals) error {
	return ask(g, control.Request{Command: control.CmdStop, Services: c.Names, All: c.All, Wait: c.Wait})
}

func (c *serviceStartCmd) Run(g *Globals) error {
	return ask(g, control.Request{Command: control.CmdStart, Services: c.Names, Wait: c.Wait, WaitHealthy: c.WaitHealthy})
}

type reloadCmd struct{}

func (c *reloadCmd) Run(g *Globals) error {
	return ask(g, control.Request{Command: control.CmdReload})
}

type upgradeCmd struct {
	To     string `help:"Move to this release (fetched and verified as usual; a bad mark on it is cleared) and pin it until --follow." placeholder:"X.Y.Z"`
	Force  bool   `help:"With --to: allow a release below the chain's minimum."`
	Follow bool   `help:"Drop the pin of an earlier --to or rollback and follow the chain again."`
	Wait   bool   `help:"Wait for an upgrade in progress instead of refusing."`
}

func (c *upgradeCmd) Run(g *Globals) error {
	if c.Follow && c.To != "" {
		return &exitError{code: 2, err: errors.New("upgrade: --to and --follow exclude each other")}
	}
	if c.Force && c.To == "" {
		return &exitError{code: 2, err: errors.New("upgrade: --force goes with --to")}
	}
	return ask(g, control.Request{Command: control.CmdUpgrade, To: c.To, Force: c.Force, Follow: c.Follow, Wait: c.Wait})
}

type rollbackCmd struct {
	Wait bool `help:"Wait for an upgrade in progress instead of refusing."`
}

func (c *rollbackCmd) Run(g *Globals) error {
	return ask(g, control.Request{Command: control.CmdRollback, Wait: c.Wait})
}

// ask sends req to the instance of the home and prints its answer.
func ask(g *Globals, req control.Request) error {
	h := newHome(g.Directory)
	resp, err := control.Ask(h.socket(), h.root, req, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lavavisor %s: %v\n", req.Command, err)
		return &exitError{code: 1}
	}
	if !resp.OK {
		fmt.Fprintf(os.Stderr, "lavavisor %s: %s\n", req.Command, resp.Error)
		return &exitError{code: 1}
	}
	if resp.Message != "" {
		fmt.Println(resp.Message)
	}
	return nil
}
