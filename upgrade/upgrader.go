package upgrade

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/lavavisor/lavavisor/chain"
	"github.com/lavavisor/lavavisor/supervisor"
)

// Journal steps, each written to state.json before it is taken (SPEC §6.6).
const (
	StepFetch    = "fetch"    // obtaining the release; nothing linked yet
	StepSwap     = "swap"     // linking current to To
	StepRestart  = "restart"  // restarting services on To (Moved: done so far)
	StepStart    = "start"    // services started on To at LavaVisor's start, on probation
	StepRollback = "rollback" // linking back to From and restarting the moved ones
)

// Results of an upgrade in state.json's last_upgrade.
const (
	ResultSuccess    = "success"
	ResultRolledBack = "rolled back"
	ResultFailed     = "failed"
)

// Services are the running services an upgrade restarts.
type Services interface {
	// Upgradable lists the running lavap services, in config order.
	Upgradable() []*supervisor.Service
	// Started is closed once the services have been launched.
	Started() <-chan struct{}
}

// Upgrader is the actor that moves the services to the release the chain
// wants: fetch or find it, swap the links, restart the services (one at a
// time when rolling), and roll back when a service on the new release does
// not stay up for its min-uptime.
type Upgrader struct {
	Installer    *Installer
	State        *StateFile
	Services     Services
	Updates      <-chan chain.Snapshot // the poller's changes
	Roles        Roles
	Mode         string
	Pin          chain.Version
	BadRetry     time.Duration
	KeepReleases int
	Rolling      bool
	// Interval is the poll interval: the first retry delay after a failure,
	// doubling up to MaxRetry (SPEC §6.7), and how often a running release
	// below the minimum is reported.
	Interval time.Duration
	MaxRetry time.Duration // 0: 5 min
	Log      *logrus.Entry
	// Probation is set when the services were started on a release linked at
	// start: they are watched for their min-uptime before anything else.
	Probation *Journal
	// OnResult is called after each upgrade attempt with how long it took
	// (metrics, tests); optional.
	OnResult func(rec UpgradeRecord, took time.Duration)

	lastWarned chain.Version
}

// Run reacts to the poller's changes until ctx ends.
func (u *Upgrader) Run(ctx context.Context) error {
	if u.MaxRetry == 0 {
		u.MaxRetry = 5 * time.Minute
	}
	select {
	case <-u.Services.Started():
	case <-ctx.Done():
		return nil
	}
	if u.Probation != nil {
		if err := u.watchStart(ctx, *u.Probation); err != nil {
			return nil // ctx ended
		}
	}
	var (
		latest   *chain.Snapshot
		retry    <-chan time.Time
		delay    = u.Interval
		reminder = time.NewTicker(u.Interval)
	)
	defer reminder.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case snap := <-u.Updates:
			// Changes that arrived during an upgrade queue in the poller's
			// latest-wins channel: only the newest is acted on.
			latest, retry, delay = &snap, nil, u.Interval
		case <-retry:
			retry = nil
		case <-reminder.C:
			if latest != nil {
				u.remindBelowMin(*latest)
			}
			continue
		}
		if latest == nil {
			continue
		}
		err := u.attempt(ctx, *latest)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			u.Log.WithError(err).WithField("retry_in", delay.String()).Error("upgrade failed; services keep running on their release")
			retry = time.After(delay)
			delay = min(2*delay, u.MaxRetry)
		}
	}
}

func toChainVersions(v chain.Versions) ChainVersions {
	return ChainVersions{ProviderMin: v.ProviderMin, ProviderTarget: v.ProviderTarget, ConsumerMin: v.ConsumerMin, ConsumerTarget: v.ConsumerTarget}
}

// Decide runs the decision for snap against the running release.
func (u *Upgrader) Decide(snap chain.Snapshot) Decision {
	running, _ := u.Installer.Current()
	st := u.State.Get()
	return Decide(Input{
		Chain:            toChainVersions(snap.Versions),
		Roles:            u.Roles,
		Running:          running,
		Mode:             u.Mode,
		Pin:              u.Pin,
		Bad:              st.Bad,
		BadRetry:         u.BadRetry,
		Now:              time.Now(),
		Local:            u.Installer.Store.Usable(),
		LastWarnedTarget: u.lastWarned,
	})
}

func (u *Upgrader) remindBelowMin(snap chain.Snapshot) {
	running, err := u.Installer.Current()
	if err != nil {
		return
	}
	minimum, _ := toChainVersions(snap.Versions).For(u.Roles)
	if running.Less(minimum) {
		u.Log.WithFields(logrus.Fields{"running": running.String(), "min": minimum.String()}).
			Error("the running release is below the chain's minimum: its services may be dropped from the protocol")
	}
}

// attempt does what the decision for snap says; an error means "retry".
func (u *Upgrader) attempt(ctx context.Context, snap chain.Snapshot) error {
	d := u.Decide(snap)
	running, _ := u.Installer.Current()
	log := u.Log.WithFields(logrus.Fields{"running": running.String(), "min": d.Min.String(), "target": d.Target.String()})
	if d.WarnLoweredTarget {
		u.lastWarned = d.Target
		log.Warn("the chain's target is below the running release; keeping the running release")
	}
	if d.BelowMin {
		log.Error("the running release is below the chain's minimum")
	}
	if d.Wanted.IsZero() {
		log.WithField("reason", d.Reason).Debug("no upgrade")
		return nil
	}
	log.WithFields(logrus.Fields{"wanted": d.Wanted.String(), "reason": d.Reason}).Info("upgrade due")
	return u.Upgrade(ctx, running, d.Candidates, toChainVersions(snap.Versions))
}

// journal writes the journal's next step before it is taken.
func (u *Upgrader) journal(j *Journal) error {
	j.Updated = time.Now().UTC()
	jc := *j
	return u.State.Update(func(s *State) { s.Journal = &jc })
}

func (u *Upgrader) finish(from, to chain.Version, result string) {
	rec := UpgradeRecord{From: from.String(), To: to.String(), Result: result, At: time.Now().UTC()}
	var took time.Duration
	if j := u.State.Get().Journal; j != nil && !j.Started.IsZero() {
		took = rec.At.Sub(j.Started)
	}
	if err := u.State.Update(func(s *State) { s.Journal = nil; s.LastUpgrade = &rec }); err != nil {
		u.Log.WithError(err).Error("record upgrade result")
	}
	if u.OnResult != nil {
		u.OnResult(rec, took)
	}
}

// Upgrade moves the services from the running release to the first
// candidate that can be had.
func (u *Upgrader) Upgrade(ctx context.Context, from chain.Version, candidates []chain.Version, cv ChainVersions) error {
	start := time.Now()
	j := &Journal{From: from.String(), To: candidates[0].String(), Step: StepFetch, Started: start.UTC()}
	if err := u.journal(j); err != nil {
		return err
	}
	to, _, err := u.Installer.Obtain(ctx, candidates)
	if err != nil {
		u.finish(from, candidates[0], ResultFailed)
		return err
	}
	j.To, j.Step = to.String(), StepSwap
	if err := u.journal(j); err != nil {
		return err
	}
	if err := u.Installer.Link(to); err != nil {
		u.finish(from, to, ResultFailed)
		return err
	}
	u.Log.WithFields(logrus.Fields{"from": from.String(), "to": to.String()}).Info("linked the new release; restarting services")
	j.Step = StepRestart
	if err := u.journal(j); err != nil {
		return err
	}
	failed, early, err := u.restartAll(ctx, j)
	if err != nil {
		return err // ctx ended: the journal says where we were
	}
	if failed != nil {
		return u.rollback(ctx, j, from, to, failed, early, cv)
	}
	u.finish(from, to, ResultSuccess)
	u.Log.WithFields(logrus.Fields{"from": from.String(), "to": to.String(), "took": time.Since(start).Round(time.Millisecond).String()}).Info("upgrade done")
	u.prune(from, to)
	return nil
}

// restartAll restarts the upgradable services on the linked release, each on
// probation; it returns the first that failed its min-uptime.
func (u *Upgrader) restartAll(ctx context.Context, j *Journal) (*supervisor.Service, supervisor.Exit, error) {
	svcs := u.Services.Upgradable()
	if u.Rolling {
		for _, svc := range svcs {
			st, err := svc.Restart(ctx, true)
			if err != nil {
				if ctx.Err() != nil {
					return nil, supervisor.Exit{}, err
				}
				return svc, supervisor.Exit{}, nil
			}
			j.Moved = append(j.Moved, svc.Name())
			if err := u.journal(j); err != nil {
				return nil, supervisor.Exit{}, err
			}
			if e, failed, err := waitUp(ctx, svc, st.Early); err != nil || failed {
				return svc, e, err
			}
		}
		return nil, supervisor.Exit{}, nil
	}
	type started struct {
		svc *supervisor.Service
		st  supervisor.Started
		err error
	}
	results := make(chan started, len(svcs))
	for _, svc := range svcs {
		go func() {
			st, err := svc.Restart(ctx, true)
			results <- started{svc, st, err}
		}()
	}
	var all []started
	for range svcs {
		r := <-results
		if r.err == nil {
			j.Moved = append(j.Moved, r.svc.Name())
		}
		all = append(all, r)
	}
	if err := u.journal(j); err != nil {
		return nil, supervisor.Exit{}, err
	}
	for _, r := range all {
		if r.err != nil {
			if ctx.Err() != nil {
				return nil, supervisor.Exit{}, r.err
			}
			return r.svc, supervisor.Exit{}, nil
		}
	}
	for _, r := range all {
		if e, failed, err := waitUp(ctx, r.svc, r.st.Early); err != nil || failed {
			return r.svc, e, err
		}
	}
	return nil, supervisor.Exit{}, nil
}

// waitUp waits for svc's min-uptime; failed when it exited before.
func waitUp(ctx context.Context, svc *supervisor.Service, early <-chan supervisor.Exit) (supervisor.Exit, bool, error) {
	t := time.NewTimer(svc.MinUptime())
	defer t.Stop()
	select {
	case e := <-early:
		return e, true, nil
	case <-t.C:
		return supervisor.Exit{}, false, nil
	case <-ctx.Done():
		return supervisor.Exit{}, false, ctx.Err()
	}
}

// rollback links back to from, restarts the services already moved, and
// marks to as bad.
func (u *Upgrader) rollback(ctx context.Context, j *Journal, from, to chain.Version, failed *supervisor.Service, e supervisor.Exit, cv ChainVersions) error {
	reason := fmt.Sprintf("service %s exited (%s) before its min-uptime on %s", failed.Name(), e.String(), to.Tag())
	u.Log.WithFields(logrus.Fields{
		"service": failed.Name(), "exit_code": e.Code(), "release": to.String(),
		"last_lines": strings.Join(failed.LastLines(10), "\n"),
	}).Error("new release failed; rolling back to " + from.String())
	mark := BadMark{At: time.Now().UTC(), Reason: reason, Chain: cv}
	// The bad mark and the rollback step are written together: a LavaVisor
	// killed right after must not try the bad release again.
	j.Step, j.Updated = StepRollback, time.Now().UTC()
	jc := *j
	if err := u.State.Update(func(s *State) {
		s.Journal = &jc
		if s.Bad == nil {
			s.Bad = map[string]BadMark{}
		}
		s.Bad[to.String()] = mark
	}); err != nil {
		return fmt.Errorf("journal rollback: %w", err)
	}
	if from.IsZero() {
		u.finish(from, to, ResultRolledBack)
		return errors.New(reason + "; no earlier release to roll back to")
	}
	if err := u.Installer.Link(from); err != nil {
		return fmt.Errorf("roll back to %s: %w", from.Tag(), err)
	}
	moved := map[string]bool{failed.Name(): true}
	for _, n := range j.Moved {
		moved[n] = true
	}
	for _, svc := range u.Services.Upgradable() {
		if !moved[svc.Name()] {
			continue
		}
		if _, err := svc.Restart(ctx, false); err != nil {
			if ctx.Err() != nil {
				return err
			}
			u.Log.WithError(err).WithField("service", svc.Name()).Error("restart on the previous release")
		}
	}
	u.finish(from, to, ResultRolledBack)
	u.Log.WithFields(logrus.Fields{"release": from.String(), "bad": to.String()}).Error("rolled back; the new release is marked bad until the chain's versions change or bad-release-retry passes")
	return nil
}

type failedStart struct {
	svc  *supervisor.Service
	exit supervisor.Exit
}

// watchStart watches services started on a release linked at start (journal
// step "start") for their min-uptime, and rolls back if one fails.
func (u *Upgrader) watchStart(ctx context.Context, j Journal) error {
	from, _ := chain.ParseVersion(j.From)
	to, err := chain.ParseVersion(j.To)
	if err != nil {
		return nil
	}
	// They all started together: one deadline, the longest min-uptime.
	svcs := u.Services.Upgradable()
	var longest time.Duration
	for _, svc := range svcs {
		j.Moved = append(j.Moved, svc.Name())
		longest = max(longest, svc.MinUptime())
	}
	done := make(chan struct{})
	defer close(done)
	exits := make(chan failedStart, len(svcs))
	for _, svc := range svcs {
		if svc.FirstEarly() == nil {
			continue
		}
		go func() {
			select {
			case e := <-svc.FirstEarly():
				exits <- failedStart{svc, e}
			case <-done:
			}
		}()
	}
	select {
	case f := <-exits:
		var cv ChainVersions
		if st := u.State.Get(); st.Chain != nil {
			cv = st.Chain.ChainVersions
		}
		return u.rollback(ctx, &j, from, to, f.svc, f.exit, cv)
	case <-time.After(longest):
	case <-ctx.Done():
		return ctx.Err()
	}
	u.Log.WithFields(logrus.Fields{"from": from.String(), "to": to.String()}).Info("upgrade done: services stayed up on the release linked at start")
	u.finish(from, to, ResultSuccess)
	u.prune(from, to)
	return nil
}

func (u *Upgrader) prune(from, to chain.Version) {
	if u.KeepReleases <= 0 {
		return
	}
	removed, err := u.Installer.Store.Prune(u.KeepReleases, from, to)
	if err != nil {
		u.Log.WithError(err).Warn("prune old releases")
	}
	for _, v := range removed {
		u.Log.WithField("release", v.Tag()).Info("pruned old release")
	}
}
