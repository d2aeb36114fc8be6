package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/sirupsen/logrus"

	"github.com/lavavisor/lavavisor/config"
	"github.com/lavavisor/lavavisor/supervisor"
	"github.com/lavavisor/lavavisor/upgrade"
)

type initCmd struct {
	AutoDownload *bool `name:"auto-download" help:"Download the release when it is not in the releases folder." env:"LAVAVISOR_AUTO_DOWNLOAD"`
	AutoStart    bool  `name:"auto-start" help:"Then go on exactly as lavavisor start."`
	keyringFlags
}

// Run does the seven steps of the original `lavavisor init`: home and sample
// config, versions from the chain, the release found or downloaded, verified,
// the system-path link, and `current`.
func (c *initCmd) Run(g *Globals, log *logrus.Logger, sink *supervisor.Sink) error {
	stop := newStopper(log.WithField("component", "signals"))
	defer stop.close()
	h := newHome(g.Directory)
	l := log.WithField("component", "init")
	o := g.overrides()
	o.AutoDownload = c.AutoDownload
	releasesDir := ""
	if o.ReleasesDir != nil {
		releasesDir = *o.ReleasesDir
	}
	// Before anything is written: the releases-dir of config.yml is checked
	// again once it is read.
	if err := h.checkSafe(releasesDir); err != nil {
		return err
	}
	if err := createHome(h, l); err != nil {
		return err
	}
	cfg, err := config.Load(h.configFile(), o, config.Options{AllowNoServices: true})
	if err != nil {
		return err
	}
	if err := h.checkSafe(cfg.ReleasesDir); err != nil {
		return err
	}
	if err := c.link(stop.Context(), cfg, h, l); err != nil {
		if stop.Context().Err() != nil {
			return interrupted(stop)
		}
		return err
	}
	if !c.AutoStart {
		return nil
	}
	start := startCmd{AutoDownload: c.AutoDownload, keyringFlags: c.keyringFlags}
	return start.run(g, log, sink, stop)
}

// interrupted is the exit of `init` and `create-service` stopped by a signal
// (SPEC §6.8 point 5): 130, after their deferred cleanups ran.
func interrupted(stop *stopper) error {
	return &exitError{code: 130, err: fmt.Errorf("interrupted by %v; nothing was left half-done", stop.Signal())}
}

func (c *initCmd) link(ctx context.Context, cfg *config.Config, h home, log *logrus.Entry) error {
	lock, err := h.lock()
	if err != nil {
		return err
	}
	defer lock.Unlock()
	snap, err := mustReadChain(ctx, cfg, log)
	if err != nil {
		return err
	}
	inst, err := releases(cfg, h, log, false)
	if err != nil {
		return err
	}
	st, err := upgrade.OpenState(h.stateFile(), log)
	if err != nil {
		return err
	}
	if err := recordChain(st, snap); err != nil {
		return err
	}
	up, err := newUpgrader(cfg, h, inst, st, log)
	if err != nil {
		return err
	}
	d := up.Decide(snap)
	running, _ := inst.Current()
	want := d.Wanted
	candidates := d.Candidates
	if want.IsZero() {
		// Already on the right release: make sure it is sound and linked.
		want, candidates = running, nil
		candidates = append(candidates, running)
	}
	v, m, err := inst.Obtain(ctx, candidates)
	if err != nil {
		return err
	}
	if err := inst.LinkCurrent(v); err != nil {
		return err
	}
	// The system-path link is a convenience, never a step (SPEC §6.8).
	if err := inst.LinkSystem(v); err != nil {
		log.WithError(err).Warn("system-path link not made; `start` retries it at every poll")
	}
	log.WithFields(logrus.Fields{"release": v.Tag(), "sha256": m.SHA256, "source": m.Source, "current": h.currentLink(), "system_link": inst.SystemLink}).Info("release linked")
	return nil
}

// createHome makes the home and a commented sample config.yml, never
// overwriting one.
func createHome(h home, log *logrus.Entry) error {
	if err := os.MkdirAll(h.root, 0o755); err != nil {
		return fmt.Errorf("create home: %w", err)
	}
	if _, err := os.Lstat(h.configFile()); err == nil {
		return nil // nothing to write: the home is left untouched
	}
	// Written under a temporary name, fsynced and hard-linked into place:
	// atomic, durable, and the link fails rather than overwrite a config.yml
	// made meanwhile.
	tmp, err := writeSynced(h.root, ".tmp-config.yml-*", []byte(config.SampleConfig()), 0o644)
	if err != nil {
		return fmt.Errorf("write sample config: %w", err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, h.configFile()); errors.Is(err, fs.ErrExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("create sample config: %w", err)
	}
	if err := upgrade.SyncDir(h.root); err != nil {
		return fmt.Errorf("create sample config: %w", err)
	}
	log.WithField("file", h.configFile()).Info("created a sample config.yml: add your services to it (or use lavavisor create-service)")
	return nil
}

// writeSynced writes data to a new file named after pattern in dir (as
// os.CreateTemp: never an existing file, nor through a planted link), fsyncs
// it and returns its path.
func writeSynced(dir, pattern string, data []byte, perm os.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}
