package main

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/lavavisor/lavavisor/config"
	"github.com/lavavisor/lavavisor/supervisor"
)

type podCmd struct {
	Restart *string  `help:"Restart policy: always, on-failure, never (never: exit with the child's code and let the orchestrator restart)." enum:"always,on-failure,never" env:"LAVAVISOR_RESTART"`
	Name    string   `help:"Service name in logs." default:"lavap"`
	Cmd     string   `help:"The command as one string, split like a shell would (quotes, backslashes; no expansion)." xor:"command"`
	Command []string `arg:"" optional:"" passthrough:"" help:"The command after --; a first word lavap means the current release's lavap." xor:"command"`
	keyringFlags
}

func (c *podCmd) Run(g *Globals, log *logrus.Logger, sink *supervisor.Sink) error {
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
	h := newHome(g.Directory)
	o := g.overrides()
	o.Restart = c.Restart
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
		sink.Reserve(c.Name)
		cfg.Services = []config.Service{cfg.Effective(config.Service{Name: c.Name, Args: spec.Args, Command: spec.Command})}
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
			return pw.apply(cfg, []supervisor.Spec{sp})
		},
		exitCode:    podExitCode,
		metricsAddr: g.MetricsAddr,
		password:    pw,
	}
	return s.run()
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
