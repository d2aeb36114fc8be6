package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/lavavisor/lavavisor/chain"
	"github.com/lavavisor/lavavisor/config"
	"github.com/lavavisor/lavavisor/redact"
	"github.com/lavavisor/lavavisor/upgrade"
)

// releases wires the release store, the fetcher and the links of a home.
func releases(cfg *config.Config, h home, log *logrus.Entry, readOnly bool) (*upgrade.Installer, error) {
	store := &upgrade.Store{Dir: h.releasesDir(cfg.ReleasesDir), Log: log.WithField("component", "releases"), ReadOnly: readOnly}
	in := &upgrade.Installer{Store: store, CurrentLink: h.currentLink(), Log: log.WithField("component", "releases")}
	if cfg.AutoDownload {
		in.Fetcher = &upgrade.Fetcher{
			URL:             cfg.Download.URL,
			Checksums:       cfg.Download.Checksums,
			RequireChecksum: cfg.Download.RequireChecksum,
			Timeout:         cfg.Download.Timeout.Std(),
			ConnectTimeout:  cfg.Download.ConnectTimeout.Std(),
			MaxSize:         int64(cfg.Download.MaxSize),
			Log:             log.WithField("component", "download"),
			Progress:        os.Stderr,
		}
	}
	if !readOnly {
		link, warning, err := upgrade.SystemLinkPath(cfg.Link)
		if err != nil {
			return nil, err
		}
		if warning != "" {
			log.Warn(warning)
		}
		in.SystemLink = link
	}
	return in, nil
}

// chainSource builds the version source of cfg.
func chainSource(cfg *config.Config, log *logrus.Entry) (chain.Source, error) {
	return chain.NewSource(chain.Options{
		Nodes:           cfg.Node,
		GRPCAddr:        cfg.GRPCAddr,
		GRPCInsecure:    cfg.GRPCInsecure,
		RequestTimeout:  cfg.RequestTimeout.Std(),
		MaxResponseSize: int64(cfg.MaxResponseSize),
		Log:             log.WithField("component", "chain"),
	})
}

// newUpgrader builds the upgrader of cfg; Services, Updates and Interval are
// set by `start`.
func newUpgrader(cfg *config.Config, h home, inst *upgrade.Installer, st *upgrade.StateFile, log *logrus.Entry) (*upgrade.Upgrader, error) {
	settings, err := settingsFor(cfg, h, inst.Fetcher, inst.SystemLink)
	if err != nil {
		return nil, err
	}
	return &upgrade.Upgrader{
		Installer: inst,
		State:     st,
		Settings:  settings,
		Log:       log.WithField("component", "upgrader"),
		Now:       testClock(),
	}, nil
}

// settingsFor is every upgrade setting of cfg: the one place a reloadable
// key reaches the upgrader, at start and at each reload.
func settingsFor(cfg *config.Config, h home, fetcher *upgrade.Fetcher, systemLink string) (upgrade.Settings, error) {
	pin, err := pinVersion(cfg)
	if err != nil {
		return upgrade.Settings{}, err
	}
	keep := cfg.KeepReleases
	if cfg.ReleasesDir != "" {
		// A releases folder of its own may be shared with other instances,
		// which may still run a release this one would prune: never prune it.
		keep = 0
	}
	return upgrade.Settings{
		Roles:        roles(cfg),
		Mode:         string(cfg.Upgrade),
		Pin:          pin,
		BadRetry:     cfg.BadReleaseRetry.Std(),
		KeepReleases: keep,
		Rolling:      cfg.Rolling,
		Fetcher:      fetcher,
		SystemLink:   systemLink,
		Schedule:     schedule(cfg, h),
	}, nil
}

// schedule is the upgrade window and this instance's spread delay (SPEC
// §10), derived from the host name and the home's absolute path: fixed for
// the instance, different across a fleet.
func schedule(cfg *config.Config, h home) upgrade.Schedule {
	host, _ := os.Hostname() // "" when unknown: the home still tells instances apart
	root, err := filepath.Abs(h.root)
	if err != nil {
		root = h.root
	}
	spread := cfg.UpgradeSpread.Std()
	return upgrade.Schedule{
		Open: cfg.UpgradeWindow.Start, Close: cfg.UpgradeWindow.End,
		Spread: spread, Delay: upgrade.InstanceDelay(host, root, spread),
	}
}

// testClockEnv names a file holding a duration (such as -1h30m) that the
// upgrade window and spread add to the wall clock, re-read at every look.
// A seam for the end-to-end tests only, so that they can move an instance
// to a window's opening without waiting for it; not a setting.
const testClockEnv = "LAVAVISOR_TEST_CLOCK_OFFSET_FILE"

// testClock is the clock of the upgrade window and spread: nil (the wall
// clock) unless the test seam is set.
func testClock() func() time.Time {
	path := os.Getenv(testClockEnv)
	if path == "" {
		return nil
	}
	return func() time.Time {
		b, err := os.ReadFile(path)
		if err != nil {
			return time.Now()
		}
		off, err := time.ParseDuration(strings.TrimSpace(string(b)))
		if err != nil {
			return time.Now()
		}
		return time.Now().Add(off)
	}
}

// prefetchSettings are cfg's pre-fetch settings (SPEC §8), at start and at
// each reload.
func prefetchSettings(cfg *config.Config, h home, fetcher *upgrade.Fetcher) (upgrade.PrefetchSettings, error) {
	s, err := settingsFor(cfg, h, fetcher, "")
	if err != nil {
		return upgrade.PrefetchSettings{}, err
	}
	return upgrade.PrefetchSettings{
		Enabled: cfg.PrefetchOn(), Fetcher: fetcher, Roles: s.Roles, Mode: s.Mode, Pin: s.Pin, KeepReleases: s.KeepReleases,
	}, nil
}

// upgraderSettings are cfg's upgrade settings for a reload: the fetcher and
// the system-path link are built anew from it.
func upgraderSettings(cfg *config.Config, h home, log *logrus.Entry) (upgrade.Settings, error) {
	inst, err := releases(cfg, h, log, false)
	if err != nil {
		return upgrade.Settings{}, err
	}
	return settingsFor(cfg, h, inst.Fetcher, inst.SystemLink)
}

// roles are the lavap roles the services use.
func roles(cfg *config.Config) upgrade.Roles {
	var r upgrade.Roles
	for _, svc := range cfg.Services {
		switch svc.Role {
		case config.RoleProvider:
			r.Provider = true
		case config.RoleConsumer:
			r.Consumer = true
		}
	}
	return r
}

func chainVersions(v chain.Versions) upgrade.ChainVersions {
	return upgrade.ChainVersions{ProviderMin: v.ProviderMin, ProviderTarget: v.ProviderTarget, ConsumerMin: v.ConsumerMin, ConsumerTarget: v.ConsumerTarget}
}

// readChain reads the versions once for `start`, and checks the chain id. A
// mismatch is fatal; an unreachable chain is not: it is logged.
func readChain(ctx context.Context, cfg *config.Config, src chain.Source, log *logrus.Entry) (*chain.Snapshot, error) {
	snap, unread, err := queryChain(ctx, cfg, src, log)
	if err != nil {
		return nil, err
	}
	if unread != nil {
		log.WithError(unread.err).Warn(unread.what + " at start; starting on the linked release, the poller keeps trying")
		return nil, nil
	}
	return snap, nil
}

// chainUnread says why the chain could not be read: not fatal to `start`.
type chainUnread struct {
	what string // "chain not reachable", "chain versions not read"
	err  error
}

// queryChain reads the versions once, bounded by request-timeout, and checks
// the chain id: err for a mismatch (fatal), unread for a chain not read.
func queryChain(ctx context.Context, cfg *config.Config, src chain.Source, log *logrus.Entry) (*chain.Snapshot, *chainUnread, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*cfg.RequestTimeout.Std())
	defer cancel()
	if err := chain.CheckChainID(ctx, src, cfg.ChainID, log); err != nil {
		if ctx.Err() == nil && cfg.ChainID != "" && isMismatch(err) {
			return nil, nil, err
		}
		return nil, &chainUnread{what: "chain not reachable", err: err}, nil
	}
	snap, err := src.Query(ctx)
	if err == nil {
		err = snap.Versions.Validate()
	}
	if err != nil {
		return nil, &chainUnread{what: "chain versions not read", err: err}, nil
	}
	log.WithFields(logrus.Fields{
		"provider_min": snap.Versions.ProviderMin.String(), "provider_target": snap.Versions.ProviderTarget.String(),
		"consumer_min": snap.Versions.ConsumerMin.String(), "consumer_target": snap.Versions.ConsumerTarget.String(),
		"height": snap.Height, "source": redact.URL(snap.Source),
	}).Info("chain versions")
	return &snap, nil, nil
}

// isMismatch tells a wrong chain id (fatal) from an unreachable node.
// mustReadChain reads the versions once for `init` and `check`, which
// cannot go on without them.
func mustReadChain(ctx context.Context, cfg *config.Config, log *logrus.Entry) (chain.Snapshot, error) {
	src, err := chainSource(cfg, log)
	if err != nil {
		return chain.Snapshot{}, err
	}
	defer src.Close()
	snap, unread, err := queryChain(ctx, cfg, src, log)
	if err != nil {
		return chain.Snapshot{}, err
	}
	if ctx.Err() != nil {
		return chain.Snapshot{}, ctx.Err()
	}
	if unread != nil {
		return chain.Snapshot{}, fmt.Errorf("cannot read the protocol versions from the chain (%s: %w): check --node", unread.what, unread.err)
	}
	return *snap, nil
}

func isMismatch(err error) bool {
	return errors.Is(err, chain.ErrChainIDMismatch) || errors.Is(err, chain.ErrChainIDWithFile)
}

// recordChain keeps the chain's versions in state.json when they changed: a
// restart needs them (a bad mark holds until they change), not every height,
// so a poll that changes nothing writes nothing.
func recordChain(st *upgrade.StateFile, snap chain.Snapshot) error {
	if last := st.Get().Chain; last != nil && last.ChainVersions == chainVersions(snap.Versions) {
		return nil
	}
	rec := upgrade.ChainRecord{ChainVersions: chainVersions(snap.Versions), Height: snap.Height, At: snap.At.UTC()}
	if rec.At.IsZero() {
		rec.At = time.Now().UTC()
	}
	return st.Update(func(s *upgrade.State) { s.Chain = &rec })
}

// resumeJournal finishes what a killed LavaVisor left: an upgrade that had
// linked its new release but not seen it through goes back to the release
// that was running; the upgrade is then decided afresh.
func resumeJournal(st *upgrade.StateFile, in *upgrade.Installer, log *logrus.Entry) error {
	j := st.Get().Journal
	if j == nil {
		return nil
	}
	log = log.WithFields(logrus.Fields{"from": j.From, "to": j.To, "step": j.Step})
	if j.Step != upgrade.StepFetch {
		from, err := chain.ParseVersion(j.From)
		cur, _ := in.Current()
		if err == nil && !from.IsZero() && cur != from {
			if err := in.LinkCurrent(from); err != nil {
				return fmt.Errorf("resume interrupted upgrade: link back to %s: %w", from.Tag(), err)
			}
		}
	}
	log.Warn("an upgrade was interrupted (LavaVisor was stopped or killed); back on the release that was running, deciding again")
	rec := upgrade.UpgradeRecord{From: j.From, To: j.To, Result: "interrupted", At: time.Now().UTC()}
	// A full disk must not keep the services from starting: the record
	// stays in memory and the upgrader writes it at its next poll.
	if err := st.Update(func(s *upgrade.State) { s.Journal = nil; s.LastUpgrade = &rec }); err != nil {
		log.WithError(err).Error("record the interrupted upgrade; state.json is written again at every poll")
	}
	return nil
}

// pinVersion is the pin setting as a version; zero when unset.
func pinVersion(cfg *config.Config) (chain.Version, error) {
	if cfg.Pin == "" {
		return chain.Version{}, nil
	}
	v, err := chain.ParseVersion(cfg.Pin)
	if err != nil {
		return v, fmt.Errorf("pin: %w", err)
	}
	return v, nil
}
