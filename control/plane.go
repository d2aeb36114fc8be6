// Package control is LavaVisor's control plane (SPEC §9): the control
// socket with its versioned protocol, the status report, the commands an
// operator sends to a running instance, and the /metrics, /healthz and
// /readyz handlers. `main` only wires it to a session.
package control

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/oklog/run"
	"github.com/sirupsen/logrus"

	"github.com/lavavisor/lavavisor/chain"
	"github.com/lavavisor/lavavisor/config"
	"github.com/lavavisor/lavavisor/supervisor"
	"github.com/lavavisor/lavavisor/upgrade"
)

// Plane is what a running session shows to the outside: the control socket
// and, with --metrics-addr, the metrics and health endpoints. Both listen
// under the home lock, before the run group starts, so that a bad address is
// a startup error; watch and watchChain hand them the session's parts.
type Plane struct {
	log     *logrus.Entry
	socket  *socket
	metrics *metricsServer // nil without --metrics-addr
	current func() (tag string, err error)
	version string
	handle  Handler

	sup    *supervisor.Supervisor
	state  *upgrade.StateFile
	poller *chain.Poller // nil when no service runs lavap
	links  func() upgrade.LinkState
	// pending is the upgrade waiting for its window or spread; nil
	// without an upgrader.
	pending func() *upgrade.Pending
	// proposals are the version proposals and their pre-fetch (SPEC §8);
	// nil when no service runs lavap.
	proposals func() ([]upgrade.ProposalStatus, string)

	mu    sync.Mutex
	roles map[string]config.Role // changed by a reload
}

// Options are what Open needs besides the addresses.
type Options struct {
	Log *logrus.Entry
	// Current is the release `current` links to (metrics).
	Current func() (tag string, err error)
	Version string // LavaVisor's own (metrics)
}

// Open binds the control socket and the metrics address (none when ""). The
// caller holds the home lock, so a socket file found there was left by an
// instance that is gone.
func Open(socketPath, metricsAddr string, opts Options) (*Plane, error) {
	o := &Plane{log: opts.Log, current: opts.Current, version: opts.Version}
	sock, err := listen(socketPath)
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

// Close removes the control socket and releases the metrics address.
func (o *Plane) Close() {
	o.socket.close()
	if o.metrics != nil {
		o.metrics.close()
	}
}

// Watch hands over the running parts; call it before the run group starts.
func (o *Plane) Watch(sup *supervisor.Supervisor, st *upgrade.StateFile, cfg *config.Config, specs []supervisor.Spec) {
	o.sup, o.state, o.roles = sup, st, serviceRoles(cfg, specs)
}

// Reconfigure takes a reloaded config's roles.
func (o *Plane) Reconfigure(cfg *config.Config, specs []supervisor.Spec) {
	roles := serviceRoles(cfg, specs)
	o.mu.Lock()
	o.roles = roles
	o.mu.Unlock()
}

func (o *Plane) serviceRoles() map[string]config.Role {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.roles
}

// Handle sets the handler of commands; call it before the run group starts.
func (o *Plane) Handle(h Handler) { o.handle = h }

// currentTag is the release `current` links to.
func (o *Plane) currentTag() (string, error) {
	if o.current == nil {
		return "", fmt.Errorf("no current")
	}
	return o.current()
}

// WatchPending hands over the waiting upgrade; call it before the run group
// starts.
func (o *Plane) WatchPending(pending func() *upgrade.Pending) { o.pending = pending }

// waiting is the upgrade waiting now, nil when none.
func (o *Plane) waiting() *upgrade.Pending {
	if o.pending == nil {
		return nil
	}
	return o.pending()
}

// WatchLinks hands over the links' state; call it before the run group starts.
func (o *Plane) WatchLinks(links func() upgrade.LinkState) { o.links = links }

// problems lists what is wrong outside the services (status, /readyz).
func (o *Plane) problems() (all []string, notReady []string) {
	if o.links != nil {
		l := o.links()
		if l.CurrentError != "" {
			p := fmt.Sprintf("current does not name the running release %s and cannot be linked (%s); repaired at every poll", l.Running, l.CurrentError)
			all, notReady = append(all, p), append(notReady, p)
		}
		if l.SystemLinkErr != "" {
			all = append(all, fmt.Sprintf("system-path link %s not made (%s); retried at every poll", l.SystemLink, l.SystemLinkErr))
		}
	}
	if o.state != nil && o.state.Dirty() {
		all = append(all, "state.json cannot be written; retried at every poll")
	}
	return all, notReady
}

// WatchChain hands over the chain poller, when there is one.
func (o *Plane) WatchChain(p *chain.Poller) { o.poller = p }

// WatchProposals makes status and metrics show the pre-fetcher's proposals.
func (o *Plane) WatchProposals(f func() ([]upgrade.ProposalStatus, string)) { o.proposals = f }

// Polled counts a chain poll (PollerOptions.OnPoll).
func (o *Plane) Polled(err error) {
	if o.metrics != nil {
		o.metrics.polled(err)
	}
}

// Upgraded counts an upgrade's outcome (Upgrader.OnResult).
func (o *Plane) Upgraded(rec upgrade.UpgradeRecord, took time.Duration) {
	if o.metrics != nil {
		o.metrics.upgraded(rec, took)
	}
}

// AddActors adds the status server and, when enabled, the metrics server.
func (o *Plane) AddActors(g *run.Group) {
	{
		// Status server.
		g.Add(func() error {
			o.socket.serve(o.Report, o.handle, o.log)
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
func (o *Plane) chainSnapshot() (chain.Snapshot, bool) {
	if o.poller == nil {
		return chain.Snapshot{}, false
	}
	return o.poller.Last()
}

// Report is the session's status now.
func (o *Plane) Report() Report {
	now := time.Now()
	rep := Report{Services: []ServiceReport{}}
	for _, st := range o.sup.Status() {
		s := ServiceReport{Name: st.Name, State: st.State, PID: st.PID, Release: st.Release, Restarts: st.Restarts, LastExit: st.LastExit, Health: st.Health}
		if st.PID != 0 && !st.Started.IsZero() {
			s.UptimeS = math.Round(now.Sub(st.Started).Seconds()*1000) / 1000
		}
		rep.Services = append(rep.Services, s)
	}
	if snap, ok := o.chainSnapshot(); ok {
		v := snap.Versions
		rep.Chain = &ChainReport{
			ProviderMin: v.ProviderMin.String(), ProviderTarget: v.ProviderTarget.String(),
			ConsumerMin: v.ConsumerMin.String(), ConsumerTarget: v.ConsumerTarget.String(),
			Height: snap.Height,
		}
	}
	if lu := o.state.Get().LastUpgrade; lu != nil {
		rep.LastUpgrade = &UpgradeReport{From: lu.From, To: lu.To, Result: lu.Result, At: lu.At}
	}
	if o.proposals != nil {
		rep.Proposals, rep.ProposalsError = o.proposals()
	}
	if rep.Proposals == nil {
		rep.Proposals = []upgrade.ProposalStatus{}
	}
	rep.Problems, _ = o.problems()
	rep.Pending = o.waiting()
	return rep
}
