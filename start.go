package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/oklog/run"
	"github.com/sirupsen/logrus"

	"github.com/lavavisor/lavavisor/chain"
	"github.com/lavavisor/lavavisor/config"
	"github.com/lavavisor/lavavisor/control"
	"github.com/lavavisor/lavavisor/health"
	"github.com/lavavisor/lavavisor/redact"
	"github.com/lavavisor/lavavisor/supervisor"
	"github.com/lavavisor/lavavisor/upgrade"

	"github.com/lavavisor/lavavisor/internal/mutant"
)

type startCmd struct {
	AutoDownload *bool `name:"auto-download" help:"Download releases the chain asks for (default: config auto-download)." env:"LAVAVISOR_AUTO_DOWNLOAD"`
	keyringFlags
}

func (c *startCmd) Run(g *Globals, log *logrus.Logger, sink *supervisor.Sink) error {
	stop := newStopper(log.WithField("component", "signals"))
	defer stop.close()
	return c.run(g, log, sink, stop)
}

func (c *startCmd) run(g *Globals, log *logrus.Logger, sink *supervisor.Sink, stop *stopper) error {
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
			err = vetLogsDir(cfg)
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
		stop:        stop,
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
			Health:      healthSpec(svc.Health),
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

// vetLogsDir checks cfg's logs-dir, if any, as a config is loaded: a folder
// that LavaVisor must not write in refuses the config (SPEC §2).
func vetLogsDir(cfg *config.Config) error {
	if cfg.LogsDir == "" {
		return nil
	}
	return checkLogsDir(cfg.LogsDir, os.Geteuid())
}

// logFiles is cfg's log file setting for the sink (SPEC §9); every file is
// vetted again before it is opened anew.
func logFiles(cfg *config.Config) supervisor.LogFiles {
	euid := os.Geteuid()
	return supervisor.LogFiles{
		Dir:      cfg.LogsDir,
		MaxSize:  int64(cfg.LogMaxSize),
		MaxFiles: cfg.LogMaxFiles,
		Check:    func(dir string) error { return checkLogsDir(dir, euid) },
	}
}

// healthSpec is a service's health check for the supervisor; zero for none.
func healthSpec(h *config.Health) health.Spec {
	if h == nil {
		return health.Spec{}
	}
	return health.Spec{
		HTTP: h.HTTP, InsecureTLS: h.InsecureTLS, TCP: h.TCP, Exec: h.Exec,
		Interval: h.Interval, StartInterval: h.StartInterval, Timeout: h.Timeout, StartPeriod: h.StartPeriod,
		Failures: h.Failures, RestartAfter: h.RestartAfter,
	}
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
	stop        *stopper
}

// allEnded ends the run group when no service is left to supervise.
type allEnded struct{ results []supervisor.Result }

func (e *allEnded) Error() string { return "every service has ended" }

func (s *session) run() error {
	// Signals are caught from here on: a stop during the start-time chain
	// read or download cancels it, cleans up and exits 0 (SPEC §6.8).
	ctx := s.stop.Context()
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
	if err := s.password.read(ctx, cfg, log); err != nil {
		if ctx.Err() != nil {
			return s.stoppedEarly(log)
		}
		return err
	}
	ops, err := control.Open(s.home.socket(), s.metricsAddr, control.Options{
		Log:     log,
		Current: func() (string, error) { _, tag, err := s.home.current(); return tag, err },
		Version: version,
	})
	if err != nil {
		return err
	}
	defer ops.Close()
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
	inst.Store.CleanTempIfIdle()
	src, err := chainSource(cfg, s.log.WithField("component", "chain"))
	if err != nil {
		return err
	}
	sources := []chain.Source{src}
	defer func() {
		for _, src := range sources {
			src.Close()
		}
	}()
	if err := resumeJournal(st, inst, log); err != nil {
		return err
	}
	// At start the chain is read once: when it wants another release than
	// `current`, that one is fetched and linked before the services start.
	snap, err := readChain(ctx, cfg, src, s.log.WithField("component", "chain"))
	if ctx.Err() != nil {
		return s.stoppedEarly(log)
	}
	if err != nil {
		return err
	}
	up, err := newUpgrader(cfg, s.home, inst, st, s.log.WithField("component", "lavavisor"))
	if err != nil {
		return err
	}
	if snap != nil {
		if err := recordChain(st, *snap); err != nil {
			log.WithError(err).Warn("record chain versions")
		}
		if upgradable {
			up.Probation = s.upgradeAtStart(ctx, up, *snap, log)
			up.ProbationChain = chainVersions(snap.Versions)
		}
	}
	if ctx.Err() != nil {
		return s.stoppedEarly(log)
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

	// Log files are closed once the services have stopped: their last
	// lines are written first.
	s.sink.SetLogFiles(logFiles(cfg))
	defer s.sink.CloseLogFiles(5 * time.Second)

	sup := supervisor.New(supervisor.Options{
		Log:     s.log.WithField("component", "supervisor"),
		Reaper:  reaper,
		Sink:    s.sink,
		Release: s.home.lavapBinary,
		Exec:    reaper.Output,
		Held:    heldServices(st, specs, log),
	})
	up.Services = sup
	up.OnResult = ops.Upgraded
	ops.Watch(sup, st, cfg, specs)
	ops.WatchLinks(up.Links)
	ops.WatchPending(up.Pending)

	forced := make(chan struct{})
	reloadc := make(chan reloadRequest, 1)
	s.stop.hooks(func() {
		close(forced)
		sup.Kill()
	}, func() {
		select {
		case reloadc <- reloadRequest{via: "SIGHUP"}:
		default: // one already queued reads the newest config.yml
		}
	}, sup.Forward)

	var poller *chain.Poller
	var prefetch *upgrade.Prefetcher
	var g run.Group
	{
		// Signal handler: the stopper has caught signals since the first
		// instruction, so a stop that came before the group started counts.
		actx, cancel := context.WithCancel(context.Background())
		g.Add(func() error {
			select {
			case <-ctx.Done():
				return &run.SignalError{Signal: s.stop.Signal()}
			case <-actx.Done():
				return nil
			}
		}, func(error) {
			cancel()
		})
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
		}, func(err error) {
			var ended *allEnded
			if errors.As(err, &ended) {
				log.Info("every service has ended; stopping")
			} else {
				log.WithField("waiting_for", waitingFor(sup.Status())).Info("stopping services (a second Ctrl-C or SIGTERM kills them at once)")
			}
			cancel()
		})
	}
	{
		// Reloader: SIGHUP applies the whole config (SPEC §5), outside the
		// signal goroutine, so that a stop signal is seen at once meanwhile.
		rctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error {
			for {
				select {
				case <-rctx.Done():
					return nil
				case req := <-reloadc:
					var err error
					cfg, err = s.reload(rctx, req.via, cfg, sup, up, poller, prefetch, &sources, ops)
					if req.reply != nil {
						req.reply <- err
					}
				}
			}
		}, func(error) {
			cancel()
		})
	}
	if upgradable {
		ictx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout.Std())
		interval, from := chain.PollInterval(ictx, src, cfg.PollInterval.Std())
		cancel()
		poller = chain.NewPoller(src, chain.PollerOptions{
			Interval:  interval,
			Log:       s.log.WithField("component", "chain"),
			Record:    func(snap chain.Snapshot) error { return recordChain(st, snap) },
			Initial:   snap,
			ChainID:   cfg.ChainID,
			OnPoll:    ops.Polled,
			Proposals: cfg.PrefetchOn(),
		})
		ops.WatchChain(poller)
		up.Updates = poller.Subscribe()
		up.Interval = interval
		ps, err := prefetchSettings(cfg, s.home, inst.Fetcher)
		if err != nil {
			return err
		}
		prefetch = upgrade.NewPrefetcher(ps)
		prefetch.Store, prefetch.Running, prefetch.Interval = inst.Store, up.Running, interval
		prefetch.Reads = poller.SubscribeProposals()
		prefetch.Log = s.log.WithField("component", "prefetch")
		up.Prefetch = prefetch
		ops.WatchProposals(prefetch.Status)
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
			// Pre-fetcher: never on the poller's nor the upgrader's path.
			ctx, cancel := context.WithCancel(context.Background())
			g.Add(func() error {
				err := prefetch.Run(ctx)
				log.Info("pre-fetcher stopped")
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
	ops.Handle(s.commands(sup, up, st, reloadc, upgradable))
	ops.AddActors(&g)
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

// stoppedEarly ends a session stopped before its services started: nothing
// runs yet, the deferred cleanups remove the socket and temporary files.
func (s *session) stoppedEarly(log *logrus.Entry) error {
	log.WithField("signal", fmt.Sprint(s.stop.Signal())).Info("stopped before the services started; lavavisor stopped")
	return nil
}

// reload applies config.yml again (SIGHUP, `lavavisor reload`): the
// services through their one owner, every other setting through the
// upgrader and the poller at their next decision. A bad config is logged,
// the running one kept, and the reason returned. It returns the config now
// in force.
func (s *session) reload(ctx context.Context, via string, cur *config.Config, sup *supervisor.Supervisor, up *upgrade.Upgrader, poller *chain.Poller, prefetch *upgrade.Prefetcher, sources *[]chain.Source, o *control.Plane) (*config.Config, error) {
	log := s.log.WithField("component", "reload")
	refuse := func(err error) (*config.Config, error) {
		log.WithError(err).Error(via + ": new config not applied; keeping the running one")
		return cur, err
	}
	cfg, err := s.load()
	if err == nil {
		err = s.password.reloadable(cfg)
	}
	if err != nil {
		return refuse(err)
	}
	if _, err := pinVersion(cfg); err != nil {
		return refuse(err)
	}
	var settings upgrade.Settings
	var ps upgrade.PrefetchSettings
	if up.Updates != nil {
		if settings, err = upgraderSettings(cfg, s.home, up.Log); err != nil {
			return refuse(err)
		}
		if ps, err = prefetchSettings(cfg, s.home, settings.Fetcher); err != nil {
			return refuse(err)
		}
	}
	if cfg.ReleasesDir != cur.ReleasesDir {
		log.WithFields(logrus.Fields{"key": "releases-dir", "running": cur.ReleasesDir, "new": cfg.ReleasesDir}).Warn(via + ": this key applies only at the next start of lavavisor")
	}
	specs := s.specs(cfg)
	if err := sup.Apply(ctx, specs); err != nil {
		return refuse(err)
	}
	if mutant.On(mutant.ReloadServicesOnly) {
		log.Info(via + ": config.yml applied")
		return cfg, nil
	}
	o.Reconfigure(cfg, specs)
	s.sink.SetLogFiles(logFiles(cfg))
	if up.Updates != nil {
		up.Reconfigure(settings)
		prefetch.Reconfigure(ps)
		poller.SetProposals(cfg.PrefetchOn())
	}
	if poller != nil && chainChanged(cur, cfg) {
		src, err := chainSource(cfg, s.log.WithField("component", "chain"))
		if err != nil {
			log.WithError(err).Error(via + ": chain source not applied")
		} else {
			*sources = append(*sources, src)
			ictx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout.Std())
			interval, _ := chain.PollInterval(ictx, src, cfg.PollInterval.Std())
			cancel()
			poller.Reconfigure(src, interval, cfg.ChainID)
			log.WithFields(logrus.Fields{"source": src.String(), "interval": interval.String()}).Info(via + ": polling the new chain source")
		}
	}
	log.Info(via + ": config.yml applied")
	return cfg, nil
}

// chainChanged reports whether the chain source or poll interval changed.
func chainChanged(a, b *config.Config) bool {
	return a.Node != b.Node || a.GRPCAddr != b.GRPCAddr || a.GRPCInsecure != b.GRPCInsecure ||
		a.ChainID != b.ChainID || a.RequestTimeout != b.RequestTimeout || a.PollInterval != b.PollInterval ||
		a.MaxResponseSize != b.MaxResponseSize
}

// upgradeAtStart links the release the chain wants before the services start
// (one start, not two). It returns the journal to watch the services' first
// min-uptime with, or nil when nothing changed. A failure is logged: the
// services then start on `current`, which is left as it was.
func (s *session) upgradeAtStart(ctx context.Context, up *upgrade.Upgrader, snap chain.Snapshot, log *logrus.Entry) *upgrade.Journal {
	d := up.Decide(snap)
	if d.Wanted.IsZero() {
		return nil
	}
	// A target-only move waits for its window and spread like any other
	// (SPEC §10): the release is fetched now, the services start on `current`.
	if wait, err := up.Hold(ctx, d); err != nil || wait > 0 {
		if err != nil && ctx.Err() == nil {
			log.WithError(err).Error("cannot get the wanted release at start; starting on the linked one")
		}
		return nil
	}
	running, _ := up.Installer.Current()
	log = log.WithFields(logrus.Fields{"running": running.String(), "wanted": d.Wanted.String()})
	log.WithField("reason", d.Reason).Info("the chain wants another release; getting it before the services start")
	v, _, err := up.Installer.Obtain(ctx, d.Candidates)
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		log.WithError(err).Error("cannot get the wanted release at start; starting on the linked one")
		return nil
	}
	j := &upgrade.Journal{From: running.String(), To: v.String(), Step: upgrade.StepStart, Started: time.Now().UTC(), Updated: time.Now().UTC()}
	if running.IsZero() {
		j.From = ""
	}
	if err := up.State.Update(func(st *upgrade.State) { st.Journal = j }); err != nil {
		up.State.Update(func(st *upgrade.State) { st.Journal = nil })
		log.WithError(err).Error("journal the upgrade at start; starting on the linked release")
		return nil
	}
	if err := up.Installer.LinkCurrent(v); err != nil {
		// Undo: `current` is as it was (the swap is atomic), the journal goes.
		up.State.Update(func(st *upgrade.State) { st.Journal = nil })
		log.WithError(err).Error("link the wanted release; starting on the linked one")
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
