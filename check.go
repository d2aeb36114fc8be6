package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/lavavisor/lavavisor/chain"
	"github.com/lavavisor/lavavisor/config"
	"github.com/lavavisor/lavavisor/redact"
	"github.com/lavavisor/lavavisor/supervisor"
	"github.com/lavavisor/lavavisor/upgrade"
)

type checkCmd struct {
	JSON bool `name:"json" help:"Print the result as JSON."`
}

// checkReport is what `lavavisor check` prints.
type checkReport struct {
	Chain   *checkChain `json:"chain"`
	Running string      `json:"running"`
	Wanted  string      `json:"wanted"`
	Source  string      `json:"source,omitempty"` // local | url
	From    string      `json:"from,omitempty"`   // the folder or the URL
	Restart []string    `json:"restart"`
	Reason  string      `json:"reason"`
	Due     bool        `json:"upgrade_due"`
	// Pending: the upgrade due waits for its window or spread (SPEC §10).
	Pending *upgrade.Pending `json:"pending,omitempty"`
	now     time.Time
	// Proposals in voting and what a running LavaVisor pre-fetches for
	// them (SPEC §8); ProposalsError why they could not be read.
	Proposals      []upgrade.ProposalStatus `json:"proposals"`
	ProposalsError string                   `json:"proposals_error,omitempty"`
}

type checkChain struct {
	ProviderMin    string `json:"provider_min"`
	ProviderTarget string `json:"provider_target"`
	ConsumerMin    string `json:"consumer_min"`
	ConsumerTarget string `json:"consumer_target"`
	Height         int64  `json:"height"`
}

// Run is a dry run: it takes no lock and writes no file. Exit 0: nothing to
// do; 3: an upgrade is due, also one that waits for its window or spread
// (shown as pending); 1: error.
func (c *checkCmd) Run(g *Globals, log *logrus.Logger, _ *supervisor.Sink) error {
	h := newHome(g.Directory)
	l := log.WithField("component", "check")
	cfg, err := config.Load(h.configFile(), g.overrides(), config.Options{AllowNoServices: true})
	if err != nil {
		return err
	}
	if err := h.checkSafe(cfg.ReleasesDir); err != nil {
		return err
	}
	snap, err := mustReadChain(context.Background(), cfg, l)
	if err != nil {
		return err
	}
	inst, err := releases(cfg, h, l, true)
	if err != nil {
		return err
	}
	r := checkReport{Chain: &checkChain{
		ProviderMin: snap.Versions.ProviderMin.String(), ProviderTarget: snap.Versions.ProviderTarget.String(),
		ConsumerMin: snap.Versions.ConsumerMin.String(), ConsumerTarget: snap.Versions.ConsumerTarget.String(),
		Height: snap.Height,
	}, Restart: []string{}}
	running, _ := inst.Current()
	if !running.IsZero() {
		r.Running = running.String()
	}
	// Read-only: a missing state.json stays missing, a corrupt one in place.
	st, err := upgrade.OpenStateReadOnly(h.stateFile(), l)
	if err != nil {
		return err
	}
	up, err := newUpgrader(cfg, h, inst, st, l)
	if err != nil {
		return err
	}
	d := up.Decide(snap)
	r.Reason = d.Reason
	if !d.Wanted.IsZero() {
		r.Due, r.Wanted = true, d.Wanted.String()
		r.now = up.Clock()
		r.Pending = up.PendingFor(d, r.now)
		r.Source, r.From = "url", "(auto-download is off: not available)"
		if _, err := inst.Store.Verify(d.Wanted); err == nil {
			r.Source, r.From = "local", inst.Store.ReleaseDir(d.Wanted)
		} else if inst.Fetcher != nil {
			r.From = redact.URL(inst.Fetcher.AssetURL(d.Wanted))
		}
		for _, svc := range cfg.Services {
			if svc.Command == "" {
				r.Restart = append(r.Restart, svc.Name)
			}
		}
	}
	r.Proposals, r.ProposalsError = checkProposals(cfg, inst, up, snap, l)
	if c.JSON {
		b, _ := json.MarshalIndent(r, "", "  ")
		fmt.Println(string(b))
	} else {
		printCheck(r)
		printProposals(os.Stdout, r.Proposals, r.ProposalsError, time.Now())
	}
	if r.Due {
		return &exitError{code: 3}
	}
	return nil
}

// checkProposals reads the version proposals once and says what a running
// LavaVisor would pre-fetch for each; a failed read is a reason, never an
// error of check.
func checkProposals(cfg *config.Config, inst *upgrade.Installer, up *upgrade.Upgrader, snap chain.Snapshot, log *logrus.Entry) ([]upgrade.ProposalStatus, string) {
	src, err := chainSource(cfg, log)
	if err != nil {
		return []upgrade.ProposalStatus{}, err.Error()
	}
	defer src.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*cfg.RequestTimeout.Std())
	defer cancel()
	ps, err := chain.ReadProposals(ctx, src)
	if err != nil {
		return []upgrade.ProposalStatus{}, err.Error()
	}
	running, _ := inst.Current()
	out := upgrade.Plan(upgrade.PlanInput{
		Read:  chain.ProposalsRead{Proposals: ps, Current: snap.Versions},
		Roles: up.Roles, Mode: up.Mode, Pin: up.Pin, Running: running, Now: time.Now(),
	})
	for i := range out {
		p := &out[i]
		if p.Prefetch != "" {
			continue
		}
		v, _ := chain.ParseVersion(p.Release)
		switch _, err := inst.Store.Verify(v); {
		case err == nil:
			p.Prefetch = upgrade.PrefetchReady
		case inst.Fetcher == nil || !cfg.PrefetchOn():
			p.Prefetch = upgrade.PrefetchFailed
			p.Reason = fmt.Sprintf("not in the releases folder and no pre-fetch (auto-download or prefetch off): place %s in %s before %s", v.Tag(), inst.Store.Dir, p.VotingEnd.Format(time.RFC3339))
		default:
			p.Prefetch = upgrade.PrefetchFetching
			p.Reason = "not in the releases folder yet: a running LavaVisor pre-fetches it"
		}
	}
	if out == nil {
		out = []upgrade.ProposalStatus{}
	}
	return out, ""
}

func printCheck(r checkReport) {
	fmt.Printf("chain:    provider min %s target %s, consumer min %s target %s (height %d)\n",
		r.Chain.ProviderMin, r.Chain.ProviderTarget, r.Chain.ConsumerMin, r.Chain.ConsumerTarget, r.Chain.Height)
	fmt.Printf("running:  %s\n", orNone(r.Running))
	if !r.Due {
		fmt.Printf("wanted:   nothing to do (%s)\n", r.Reason)
		return
	}
	fmt.Printf("wanted:   %s (%s)\n", r.Wanted, r.Reason)
	fmt.Printf("from:     %s %s\n", r.Source, r.From)
	fmt.Printf("restart:  %s\n", orNone(strings.Join(r.Restart, ", ")))
	if r.Pending != nil {
		fmt.Println(pendingLine(r.Pending, r.now))
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
