package main

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/lavavisor/lavavisor/config"
	"github.com/lavavisor/lavavisor/supervisor"
)

type podCmd struct {
	Restart     *string  `help:"Restart policy: always, on-failure, never (never: exit with the child's code and let the orchestrator restart)." enum:"always,on-failure,never" env:"LAVAVISOR_RESTART"`
	Name        string   `help:"Service name in logs." default:"lavap"`
	Cmd         string   `help:"The command as one string, split like a shell would (quotes, backslashes; no expansion)." xor:"command"`
	Command     []string `arg:"" optional:"" passthrough:"" help:"The command after --; a first word lavap means the current release's lavap." xor:"command"`
	LogsDir     *string  `name:"logs-dir" help:"Also write the command's lines, raw, to <logs-dir>/<name>.log, rotated (default: config logs-dir, else none)." env:"LAVAVISOR_LOGS_DIR"`
	LogMaxSize  *string  `name:"log-max-size" help:"Rotate the log file at this size, whole MiB (default: config log-max-size, else 100MiB)." env:"LAVAVISOR_LOG_MAX_SIZE"`
	LogMaxFiles *int     `name:"log-max-files" help:"Rotated log files kept, compressed (default: config log-max-files, else 5)." env:"LAVAVISOR_LOG_MAX_FILES"`
	keyringFlags
	healthFlags

	// The chart sets it to keep its grace period above it (deploy/helm).
	StopTimeout *time.Duration `name:"stop-timeout" help:"After the stop signal, how long the child has before SIGKILL (default: config.yml's stop-timeout, else 15s); keep the container's grace period above it." env:"LAVAVISOR_STOP_TIMEOUT"`
}

// healthFlags declare the pod's health check (SPEC §7), as a service's health
// key does in config.yml. Pointers are nil when not given: config.HealthFlags
// fills the defaults, in one place with the file's.
type healthFlags struct {
	HealthHTTP          *string        `name:"health-http" group:"Health" help:"Health check: GET this http:// or https:// URL; 2xx is healthy (lavap: --metrics-listen-address, then /metrics/<SPEC>/<api-interface>/health or /metrics/overall-health)." env:"LAVAVISOR_HEALTH_HTTP"`
	HealthTCP           *string        `name:"health-tcp" group:"Health" help:"Health check: connect to host:port; an accepted connection is healthy." env:"LAVAVISOR_HEALTH_TCP"`
	HealthExec          *string        `name:"health-exec" group:"Health" help:"Health check: run this command, split like --cmd (no shell); its first word an absolute path; exit 0 is healthy." env:"LAVAVISOR_HEALTH_EXEC"`
	HealthInsecureTLS   *bool          `name:"health-insecure-tls" group:"Health" help:"Accept a self-signed certificate from an https:// --health-http." env:"LAVAVISOR_HEALTH_INSECURE_TLS"`
	HealthInterval      *time.Duration `name:"health-interval" group:"Health" help:"Between checks (default ${health_interval})." env:"LAVAVISOR_HEALTH_INTERVAL"`
	HealthStartInterval *time.Duration `name:"health-start-interval" group:"Health" help:"Between checks during the start period (default ${health_start_interval})." env:"LAVAVISOR_HEALTH_START_INTERVAL"`
	HealthTimeout       *time.Duration `name:"health-timeout" group:"Health" help:"Time allowed for one check (default ${health_timeout})." env:"LAVAVISOR_HEALTH_TIMEOUT"`
	HealthStartPeriod   *time.Duration `name:"health-start-period" group:"Health" help:"A (re)started service has this long to become healthy (default ${health_start_period})." env:"LAVAVISOR_HEALTH_START_PERIOD"`
	HealthFailures      *int           `name:"health-failures" group:"Health" help:"Consecutive failures, after the start period, that make it unhealthy (default ${health_failures})." env:"LAVAVISOR_HEALTH_FAILURES"`
	HealthRestartAfter  *time.Duration `name:"health-restart-after" group:"Health" help:"Restart the service when unhealthy this long (default ${health_restart_after}: never)." env:"LAVAVISOR_HEALTH_RESTART_AFTER"`
}

// health is the pod service's health check, nil when no --health-* flag is
// given. A bad value is a usage error (exit 2) naming its flag.
func (f healthFlags) health() (*config.Health, error) {
	hf := config.HealthFlags{
		HTTP: f.HealthHTTP, TCP: f.HealthTCP, InsecureTLS: f.HealthInsecureTLS,
		Interval: f.HealthInterval, StartInterval: f.HealthStartInterval, Timeout: f.HealthTimeout,
		StartPeriod: f.HealthStartPeriod, Failures: f.HealthFailures, RestartAfter: f.HealthRestartAfter,
	}
	if f.HealthExec != nil {
		words, err := splitWords(*f.HealthExec)
		if err != nil {
			return nil, &exitError{code: 2, err: fmt.Errorf("--health-exec: %w", err)}
		}
		hf.Exec = append([]string{}, words...) // given, even if empty
	}
	h, err := hf.Health()
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	return h, nil
}

func (c *podCmd) Run(g *Globals, log *logrus.Logger, sink *supervisor.Sink) error {
	stop := newStopper(log.WithField("component", "signals"))
	defer stop.close()
	argv := c.Command
	if c.Cmd != "" {
		var err error
		if argv, err = splitWords(c.Cmd); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--cmd: %w", err)}
		}
	}
	if len(argv) > 0 && argv[0] == "--" {
		argv = argv[1:]
	}
	if len(argv) == 0 {
		return &exitError{code: 2, err: errors.New("pod: no command: lavavisor pod -- lavap rpcprovider ... (or --cmd \"...\")")}
	}
	health, err := c.health()
	if err != nil {
		return err
	}
	h := newHome(g.Directory)
	o := c.overrides(g)
	spec := supervisor.Spec{Name: c.Name, Args: argv[1:]}
	// The command becomes the config's one service, so that its role (from
	// rpcprovider/rpcconsumer) counts in upgrade decisions as in `start`.
	load := func() (*config.Config, error) {
		cfg, err := config.Load(h.configFile(), o, config.Options{IgnoreServices: true, AllowMissing: true, Pod: true})
		if err != nil {
			return nil, err
		}
		if err := h.checkSafe(cfg.ReleasesDir); err != nil {
			return nil, err
		}
		if err := vetLogsDir(cfg); err != nil {
			return nil, err
		}
		sink.Reserve(c.Name)
		svc := config.Service{Name: c.Name, Args: spec.Args, Command: spec.Command}
		if health != nil {
			hc := *health // each load its own copy: nothing shares it with the last one
			svc.Health = &hc
		}
		cfg.Services = []config.Service{cfg.Effective(svc)}
		return cfg, nil
	}
	if argv[0] == "lavap" {
		spec.Upgradable = true
		spec.Binary = h.lavapBinary
	} else {
		path, err := exec.LookPath(argv[0])
		if err != nil {
			return fmt.Errorf("pod: %w", err)
		}
		if path, err = filepath.Abs(path); err != nil {
			return fmt.Errorf("pod: %w", err)
		}
		spec.Command = path
		spec.Binary = func() (string, string, error) { return path, "", nil }
	}
	// The one service gets the password when one is given.
	pw := &keyringPassword{flags: c.keyringFlags, wants: func(*config.Config) []string {
		if !c.keyringFlags.given() {
			return nil
		}
		return []string{c.Name}
	}}
	s := &session{
		log:  log,
		sink: sink,
		home: h,
		load: load,
		specs: func(cfg *config.Config) []supervisor.Spec {
			svc := cfg.Services[0]
			sp := spec
			sp.StopSignal, sp.StopTimeout = svc.StopSignal, svc.StopTimeout
			sp.MinUptime, sp.Restart = svc.MinUptime, supervisor.RestartPolicy(svc.Restart)
			sp.Health = healthSpec(svc.Health)
			return pw.apply(cfg, []supervisor.Spec{sp})
		},
		exitCode:    podExitCode,
		metricsAddr: g.MetricsAddr,
		password:    pw,
		stop:        stop,
	}
	return s.run()
}

// overrides are the settings that pod's flags give over config.yml: the
// global ones and pod's own.
func (c *podCmd) overrides(g *Globals) config.Overrides {
	o := g.overrides()
	o.Restart, o.StopTimeout = c.Restart, c.StopTimeout
	o.LogsDir, o.LogMaxSize, o.LogMaxFiles = c.LogsDir, c.LogMaxSize, c.LogMaxFiles
	return o
}

// podExitCode is the child's: its exit code, or 128+N when killed by signal N.
func podExitCode(rs []supervisor.Result) int {
	for _, r := range rs {
		if r.Exit != nil {
			return r.Exit.Code()
		}
	}
	return 1
}
