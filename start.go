package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/oklog/run"
	"github.com/sirupsen/logrus"

	"github.com/lavavisor/lavavisor/chain"
	"github.com/lavavisor/lavavisor/config"
	"github.com/lavavisor/lavavisor/redact"
	"github.com/lavavisor/lavavisor/supervisor"
	"github.com/lavavisor/lavavisor/upgrade"
)

type startCmd struct {
	AutoDownload *bool `name:"auto-download" help:"Download releases the chain asks for (default: config auto-download)." env:"LAVAVISOR_AUTO_DOWNLOAD"`
	keyringFlags
}

func (c *startCmd) Run(g *Globals, log *logrus.Logger, sink *supervisor.Sink) error {
	h := newHome(g.Directory)
	o := g.overrides()
	o.AutoDownload = c.AutoDownload
	pw := &keyringPassword{flags: c.keyringFlags, wants: keyringServices}
	load := func() (*config.Config, error) {
		cfg, err := config.Load(h.configFile(), o, config.Options{})
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: run `lavavisor init` to create it", err)
		}
		if err == nil {
			err = h.checkSafe(cfg.ReleasesDir)
		}
		if err == nil {
			for _, svc := range cfg.Services {
				sink.Reserve(svc.Name)
			}
		}
		if err == nil {
			err = pw.check(cfg)
		}
		return cfg, err
	}
	s := &session{
		log:  log,
		sink: sink,
		home: h,
		load: load,
		specs: func(cfg *config.Config) []supervisor.Spec {
			return pw.apply(cfg, serviceSpecs(cfg, h))
		},
		exitCode:    supervisor.ExitCode,
		metricsAddr: g.MetricsAddr,
		password:    pw,
	}
	return s.run()
}

// serviceSpecs turns config services into supervisor specs.
func serviceSpecs(cfg *config.Config, h home) []supervisor.Spec {
	specs := make([]supervisor.Spec, 0, len(cfg.Services))
	for _, svc := range cfg.Services {
		sp := supervisor.Spec{
			Name:        svc.Name,
			Command:     svc.Command,
			Args:        svc.Args,
			Dir:         svc.Dir,
			StopSignal:  svc.StopSignal,
			StopTimeout: svc.StopTimeout,
			MinUptime:   svc.MinUptime,
			Restart:     supervisor.RestartPolicy(svc.Restart),
		}
		for k, v := range svc.Env {
			sp.Env = append(sp.Env, k+"="+v)
		}
		slices.Sort(sp.Env) // map order must not look like a config change
		if svc.Command == "" {
			sp.Upgradable = true
			sp.Binary = h.lavapBinary
		} else {
			cmd := svc.Command
			sp.Binary = func() (string, string, error) { return cmd, "", nil }
		}
		specs = append(specs, sp)
	}
	return specs
}

// session is one run of supervised services: `start`, `pod`, `init --auto-start`.
type session struct {
	log      *logrus.Logger
	sink     *supervisor.Sink
	home     home
	load     func() (*config.Config, error)
	specs    func(*config.Config) []supervisor.Spec
	exitCode func([]supervisor.Result) int // when every service ended for good

	metricsAddr string           // --metrics-addr; "" for none
	password    *keyringPassword // nil: no service is fed one
}

// allEnded ends the run group when no service is left to supervise.
type allEnded struct{ results []supervisor.Result }

func (e *allEnded) Error() string { return "every service has ended" }

func (s *session) run() error {
	cfg, err := s.load()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.home.root, 0o755); err != nil {
		return fmt.Errorf("create home: %w", err)
	}
	lock, err := s.home.lock()
	if err != nil {
		return err
	}
	defer lock.Unlock()
	log := s.log.WithField("component", "lavavisor")
	if err := s.password.read(cfg, log); err != nil {
		return err
	}
	ops, err := openOps(s.home, s.metricsAddr, log)
	if err != nil {
		return err
	}
	defer ops.close()
	removeTemp(s.home, log)

	specs := s.specs(cfg)
	upgradable := false
	for _, sp := range specs {
		upgradable = upgradable || sp.Upgradable
	}
	st, err := upgrade.OpenState(s.home.stateFile(), log)
	if err != nil {
		return err
	}
	inst, err := releases(cfg, s.home, s.log.WithField("component", "lavavisor"), false)
	if err != nil {
		return err
	}
	src, err := chainSource(cfg, s.log.WithField("component", "chain"))
	if err != nil {
		return err
	}
	defer src.Close()
	if err := resumeJournal(st, inst, log); err != nil {
		return err
	}
	// At start the chain is read once: when it wants another release than
	// `current`, that one is fetched and linked before the services start.
	snap, err := readChain(cfg, src, s.log.WithField("component", "chain"))
	if err != nil {
		return err
	}
	up, err := newUpgrader(cfg, inst, st, s.log.WithField("component", "lavavisor"))
	if err != nil {
		return err
	}
	if snap != nil {
		if err := recordChain(st, *snap); err != nil {
			log.WithError(err).Warn("record chain versions")
		}
		if upgradable {
			up.Probation = s.upgradeAtStart(up, *snap, log)
		}
	}
	if upgradable {
		if _, _, err := s.home.current(); err != nil {
			return err
		}
	}
	if up.Probation != nil {
		for i := range specs {
			specs[i].Probation = specs[i].Upgradable
		}
	}

	// The reaper outlives the run group: services are stopped, and so reaped,
	// while the group shuts down.
	reaperCtx, stopReaper := context.WithCancel(context.Background())
	reaper, err := supervisor.NewReaper(s.log.WithField("component", "reaper"))
	if err != nil {
		stopReaper()
		return err
	}
	reaperDone := make(chan struct{})
	go func() { reaper.Run(reaperCtx); close(reaperDone) }()
	defer func() { stopReaper(); <-reaperDone }()
	inst.Store.Output = reaper.Output

	sup := supervisor.New(supervisor.Options{
		Log:    s.log.WithField("component", "supervisor"),
		Reaper: reaper,
		Sink:   s.sink,
	})
	up.Services = sup
	up.OnResult = ops.upgraded
	ops.watch(sup, st, cfg, specs)

	// One Notify for the whole run, beside the run group's signal actor: a
	// second SIGINT/SIGTERM must still be seen while the group shuts down.
	sigc := make(chan os.Signal, 8)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGPIPE)
	defer signal.Stop(sigc)
	forced := make(chan struct{})
	sigCtx, stopSignals := context.WithCancel(context.Background())
	defer stopSignals()
	go s.handleSignals(sigCtx, sigc, sup, forced)

	var g run.Group
	{
		// Signal handler.
		g.Add(run.SignalHandler(context.Background(), os.Interrupt, syscall.SIGTERM))
	}
	{
		// Services.
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error {
			results := sup.Run(ctx, specs)
			if ctx.Err() != nil {
				log.Info("services stopped")
				return nil
			}
			return &allEnded{results: results}
		}, func(error) {
			log.WithField("waiting_for", waitingFor(sup.Status())).Info("stopping services (a second Ctrl-C or SIGTERM kills them at once)")
			cancel()
		})
	}
	if upgradable {
		ictx, cancel := context.WithTimeout(context.Background(), cfg.RequestTimeout.Std())
		interval, from := chain.PollInterval(ictx, src, cfg.PollInterval.Std())
		cancel()
		poller := chain.NewPoller(src, chain.PollerOptions{
			Interval: interval,
			Log:      s.log.WithField("component", "chain"),
			Record:   func(snap chain.Snapshot) error { return recordChain(st, snap) },
			Initial:  snap,
			ChainID:  cfg.ChainID,
			OnPoll:   ops.polled,
		})
		ops.watchChain(poller)
		up.Updates = poller.Subscribe()
		up.Interval = interval
		{
			// Chain poller.
			ctx, cancel := context.WithCancel(context.Background())
			g.Add(func() error {
				log.WithFields(logrus.Fields{"source": src.String(), "interval": interval.String(), "interval_from": from}).Info("polling the chain")
				err := poller.Run(ctx)
				log.Info("chain poller stopped")
				return err
			}, func(error) {
				cancel()
			})
		}
		{
			// Upgrader. Interrupted with everything else: a restart it is in
			// the middle of returns, and the journal says where it was.
			ctx, cancel := context.WithCancel(context.Background())
			g.Add(func() error {
				err := up.Run(ctx)
				log.Info("upgrader stopped")
				return err
			}, func(error) {
				cancel()
			})
		}
	}
	ops.addActors(&g)
	s.banner(log, cfg, specs)
	err = g.Run()

	select {
	case <-forced:
		return &exitError{code: 1, err: errors.New("services killed by a second signal")}
	default:
	}
	var ended *allEnded
	switch {
	case errors.Is(err, run.ErrSignal):
		log.Info("lavavisor stopped")
		return nil
	case errors.As(err, &ended):
		for _, r := range ended.results {
			log.WithField("service", r.Name).Info("service ended: " + r.String())
		}
		code := s.exitCode(ended.results)
		log.WithField("exit_code", code).Info("every service has ended; lavavisor exits")
		return &exitError{code: code}
	}
	return err
}

// upgradeAtStart links the release the chain wants before the services start
// (one start, not two). It returns the journal to watch the services' first
// min-uptime with, or nil when nothing changed. A failure is logged: the
// services then start on `current`.
func (s *session) upgradeAtStart(up *upgrade.Upgrader, snap chain.Snapshot, log *logrus.Entry) *upgrade.Journal {
	d := up.Decide(snap)
	if d.Wanted.IsZero() {
		return nil
	}
	running, _ := up.Installer.Current()
	log = log.WithFields(logrus.Fields{"running": running.String(), "wanted": d.Wanted.String()})
	log.WithField("reason", d.Reason).Info("the chain wants another release; getting it before the services start")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, _, err := up.Installer.Obtain(ctx, d.Candidates)
	if err != nil {
		log.WithError(err).Error("cannot get the wanted release at start; starting on the linked one")
		return nil
	}
	j := &upgrade.Journal{From: running.String(), To: v.String(), Step: upgrade.StepStart, Started: time.Now().UTC(), Updated: time.Now().UTC()}
	if running.IsZero() {
		j.From = ""
	}
	if err := up.State.Update(func(st *upgrade.State) { st.Journal = j }); err != nil {
		log.WithError(err).Error("journal the upgrade at start; starting on the linked release")
		return nil
	}
	if err := up.Installer.Link(v); err != nil {
		log.WithError(err).Error("link the wanted release; starting on the linked one")
		up.State.Update(func(st *upgrade.State) { st.Journal = nil })
		return nil
	}
	log.WithField("release", v.Tag()).Info("linked; services start on it, on probation for their min-uptime")
	return j
}

// banner says, once, what runs where.
func (s *session) banner(log *logrus.Entry, cfg *config.Config, specs []supervisor.Spec) {
	names := make([]string, len(specs))
	for i, sp := range specs {
		names[i] = sp.Name
	}
	_, release, _ := s.home.current()
	log.WithFields(logrus.Fields{
		"home": s.home.root, "node": redact.URL(cfg.Node), "chain_id": cfg.ChainID, "release": release,
		"services": strings.Join(names, ","),
	}).Info("lavavisor started")
}

// handleSignals reloads on SIGHUP, forwards SIGUSR1/2, ignores SIGPIPE (a
// closed terminal must not kill LavaVisor), and turns a second SIGINT/SIGTERM
// into an immediate kill.
func (s *session) handleSignals(ctx context.Context, sigc <-chan os.Signal, sup *supervisor.Supervisor, forced chan<- struct{}) {
	log := s.log.WithField("component", "signals")
	stops := 0
	for {
		var sig os.Signal
		select {
		case <-ctx.Done():
			return
		case sig = <-sigc:
		}
		switch sig {
		case os.Interrupt, syscall.SIGTERM:
			stops++
			if stops == 2 {
				log.WithField("signal", sig.String()).Warn("second stop signal: killing services now")
				close(forced)
				sup.Kill()
			}
		case syscall.SIGHUP:
			if stops > 0 {
				continue
			}
			cfg, err := s.load()
			if err != nil {
				log.WithError(err).Error("SIGHUP: new config not applied; keeping the running one")
				continue
			}
			log.Info("SIGHUP: applying config.yml")
			if err := sup.Apply(ctx, s.specs(cfg)); err != nil {
				log.WithError(err).Warn("SIGHUP: config not applied")
			}
		case syscall.SIGUSR1, syscall.SIGUSR2:
			log.WithField("signal", sig.String()).Info("forwarding signal to services")
			sup.Forward(sig.(syscall.Signal))
		}
	}
}

// waitingFor names the running services and their stop timeouts.
func waitingFor(st []supervisor.Status) string {
	var parts []string
	for _, s := range st {
		if s.PID != 0 {
			parts = append(parts, fmt.Sprintf("%s (pid %d)", s.Name, s.PID))
		}
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}
