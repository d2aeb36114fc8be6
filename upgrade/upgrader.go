package upgrade

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/lavavisor/lavavisor/chain"
	"github.com/lavavisor/lavavisor/supervisor"

	"github.com/lavavisor/lavavisor/internal/mutant"
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

// Services are the supervised services, addressed by name: an upgrade never
// keeps a pointer that a reload can make stale (SPEC §5, one owner).
type Services interface {
	// Upgradable names the lavap services that are not ended, in config order.
	Upgradable() []string
	// Restart restarts one service on the release SetRelease named; an error
	// wrapping supervisor.ErrGone means it ended, was removed or is stopping.
	Restart(ctx context.Context, name string, probation bool) (supervisor.Started, error)
	// SetRelease is the lavap binary upgradable services start on from now on.
	SetRelease(path, tag string)
	// FirstStart is the probation of a service started on a release linked at start.
	FirstStart(name string) (supervisor.Started, bool)
	// RunningRelease is the release tag a service's process runs ("" for none).
	RunningRelease(name string) string
	// LastLines are a service's last log lines, for the failure report.
	LastLines(name string, n int) []string
	// Started is closed once the services have been launched.
	Started() <-chan struct{}
}

// Settings are the upgrader's reloadable settings (SPEC §5: a reload applies
// the whole config at the next decision).
type Settings struct {
	Roles        Roles
	Mode         string
	Pin          chain.Version
	BadRetry     time.Duration
	KeepReleases int
	Rolling      bool
	Fetcher      *Fetcher // nil: never download
	SystemLink   string   // "": none
	// Schedule makes an upgrade that only follows the target wait for the
	// upgrade window and this instance's spread delay (SPEC §10).
	Schedule Schedule
}

// Upgrader is the actor that moves the services to the release the chain
// wants: fetch or find it, swap `current`, restart the services (one at a
// time when rolling), and roll back when a service on the new release does
// not stay up for its min-uptime. Every failed step undoes what was done
// before it (SPEC §6.8): the services end on the release they ran.
type Upgrader struct {
	Installer *Installer
	State     *StateFile
	Services  Services
	Updates   <-chan chain.Snapshot // the poller's changes
	Settings
	// Interval is the poll interval: the first retry delay after a failure,
	// doubling up to MaxRetry (SPEC §6.7), and how often links are repaired
	// and a running release below the minimum is reported.
	Interval time.Duration
	MaxRetry time.Duration // 0: 5 min
	Log      *logrus.Entry
	// Probation is set when the services were started on a release linked at
	// start: they are watched for their min-uptime before anything else.
	Probation *Journal
	// ProbationChain are the chain's versions the start-time move was
	// decided under: a bad mark records them, so that a change that came
	// during the probation lifts it.
	ProbationChain ChainVersions
	// Prefetch, when set, is held while a release is obtained (a pre-fetch of
	// another release is cancelled) and names the releases never pruned.
	Prefetch *Prefetcher
	// OnResult is called after each upgrade attempt with how long it took
	// (metrics, tests); optional.
	OnResult func(rec UpgradeRecord, took time.Duration)
	// Now is the clock of the upgrade window and spread; nil: the wall
	// clock. A seam for tests.
	Now func() time.Time

	lastWarned   chain.Version
	prepared     chain.Version // the waiting upgrade's release, fetched already
	held         Decision      // the decision of the upgrade that waits
	stateFailing bool          // a state.json write failed and was reported
	noneToMove   bool          // an upgrade is due with no service to move (logged once)
	opc          chan opRequest
	stopped      chan struct{} // closed when Run returns
	reconfc      chan Settings

	mu      sync.Mutex
	running chain.Version // the release the services run (what `current` must name)
	links   LinkState
	busy    bool          // an upgrade or an operator's command is in progress
	idle    chan struct{} // closed when busy ends
	pending *Pending      // an upgrade waiting for its window or spread
}

// LinkState says which links do not name the running release, and why.
type LinkState struct {
	Running       string // the release the services run
	CurrentError  string // "" when `current` names it
	SystemLink    string // the system-path link; "" for none
	SystemLinkErr string // "" when it is made
}

// Links reports the links' state for status, readiness and metrics.
func (u *Upgrader) Links() LinkState {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.links
}

// Reconfigure hands new settings to the running upgrader: the next decision
// uses them, and it decides again at once. It never waits for an upgrade.
func (u *Upgrader) Reconfigure(s Settings) {
	u.init()
	for {
		select {
		case u.reconfc <- s:
			return
		default:
		}
		// A newer config replaces one not yet taken.
		select {
		case <-u.reconfc:
		default:
		}
	}
}

// init makes the channels; safe to call more than once before Run.
func (u *Upgrader) init() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.reconfc == nil {
		u.reconfc = make(chan Settings, 1)
		u.opc = make(chan opRequest)
		u.stopped = make(chan struct{})
	}
}

// Running is the release the services run.
func (u *Upgrader) Running() chain.Version {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.running
}

// setRunning records v as the services' release and makes it the binary
// upgradable services start on.
func (u *Upgrader) setRunning(v chain.Version) {
	u.mu.Lock()
	u.running = v
	u.links.Running = v.String()
	u.mu.Unlock()
	if u.Services != nil && !v.IsZero() {
		u.Services.SetRelease(u.Installer.Store.BinPath(v), v.Tag())
	}
}

// Run reacts to the poller's changes until ctx ends.
func (u *Upgrader) Run(ctx context.Context) error {
	u.init()
	defer close(u.stopped)
	if u.MaxRetry == 0 {
		u.MaxRetry = 5 * time.Minute
	}
	select {
	case <-u.Services.Started():
	case <-ctx.Done():
		return nil
	}
	if cur, err := u.Installer.Current(); err == nil {
		u.setRunning(cur)
	}
	if u.Probation != nil {
		if err := u.watchStart(ctx, *u.Probation); err != nil {
			return nil // ctx ended
		}
	}
	u.repairLinks()
	var (
		latest   *chain.Snapshot
		retry    <-chan time.Time
		wake     <-chan time.Time // a waiting upgrade's next look at its schedule
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
			if latest != nil && snap.Versions != latest.Versions {
				u.liftBadMarks()
			}
			latest, retry, delay = &snap, nil, u.Interval
		case s := <-u.reconfc:
			u.apply(s)
			retry, delay = nil, u.Interval
			u.repairLinks()
		case op := <-u.opc:
			u.takeSettings()
			u.setBusy(true)
			msg, err := u.operate(ctx, op.Op, latest)
			u.setBusy(false)
			op.reply <- opReply{msg, err}
			retry, delay = nil, u.Interval
			if u.Pending() != nil {
				// The command may have done what waited: decide again.
				u.setPending(nil)
				wake = time.After(0)
			}
			continue
		case <-retry:
			retry = nil
		case <-wake:
			wake = nil
			if wait := u.stillWaiting(); wait > 0 {
				wake = time.After(min(wait, u.Interval))
				continue
			}
		case <-reminder.C:
			u.repairLinks()
			u.flushState()
			if latest != nil {
				u.remindBelowMin(*latest)
			}
			continue
		}
		if latest == nil || retry != nil {
			continue
		}
		// A reload that came during the last upgrade applies before this
		// decision, whichever of the two the select above picked first.
		u.takeSettings()
		u.setBusy(true)
		wait, err := u.attempt(ctx, *latest)
		u.setBusy(false)
		if ctx.Err() != nil {
			return nil
		}
		wake = nil
		if errors.Is(err, errNothingToMove) {
			// Decided again at every poll interval, so that a service
			// started by the operator is moved without a chain change.
			if !u.noneToMove {
				u.Log.WithField("wanted", u.Decide(*latest).Wanted.String()).Info("upgrade due, but no lavap service is running to move (held stopped or ended); deciding again at every poll until one runs")
			}
			u.noneToMove = true
			retry = time.After(u.Interval)
			continue
		}
		u.noneToMove = false
		if wait > 0 {
			// At the poll interval at the latest: the clock may be stepped.
			wake = time.After(min(wait, u.Interval))
		}
		if err != nil {
			u.Log.WithError(err).WithField("retry_in", delay.String()).Error("upgrade failed; services keep running on their release")
			retry = time.After(delay)
			delay = min(2*delay, u.MaxRetry)
		}
	}
}

// apply makes s the settings of the next decision.
func (u *Upgrader) apply(s Settings) {
	u.Settings = s
	u.Installer.Fetcher, u.Installer.SystemLink = s.Fetcher, s.SystemLink
	u.Log.Info("config reloaded: deciding again with the new settings")
}

// liftBadMarks forgets the bad marks once the chain's versions changed
// (SPEC §6.6): a release marked bad is tried again after a change, also when
// the versions come back to those it was marked under.
func (u *Upgrader) liftBadMarks() {
	bad := u.State.Get().Bad
	if len(bad) == 0 {
		return
	}
	var names []string
	for v := range bad {
		names = append(names, v)
	}
	sort.Strings(names)
	if err := u.State.Update(func(s *State) { s.Bad = nil }); err != nil {
		u.Log.WithError(err).Error("record the lifted bad marks; state.json is written again at every poll")
	}
	u.Log.WithField("releases", strings.Join(names, ",")).Info("the chain's versions changed: releases marked bad may be tried again")
}

// takeSettings applies a reload's settings waiting to be taken, if any.
func (u *Upgrader) takeSettings() {
	select {
	case s := <-u.reconfc:
		u.apply(s)
	default:
	}
}

func toChainVersions(v chain.Versions) ChainVersions {
	return ChainVersions{ProviderMin: v.ProviderMin, ProviderTarget: v.ProviderTarget, ConsumerMin: v.ConsumerMin, ConsumerTarget: v.ConsumerTarget}
}

// Decide runs the decision for snap against the running release. The
// config's pin wins over an operator's (`upgrade --to`, `rollback`).
func (u *Upgrader) Decide(snap chain.Snapshot) Decision {
	running := u.Running()
	if running.IsZero() {
		running, _ = u.Installer.Current()
	}
	st := u.State.Get()
	pin := u.Pin
	if pin.IsZero() && st.OperatorPin != "" {
		pin, _ = chain.ParseVersion(st.OperatorPin)
	}
	return Decide(Input{
		Chain:            toChainVersions(snap.Versions),
		Roles:            u.Roles,
		Running:          running,
		Mode:             u.Mode,
		Pin:              pin,
		Bad:              st.Bad,
		BadRetry:         u.BadRetry,
		Now:              time.Now(),
		Local:            u.Installer.Store.Usable(),
		LastWarnedTarget: u.lastWarned,
	})
}

func (u *Upgrader) remindBelowMin(snap chain.Snapshot) {
	running := u.Running()
	if running.IsZero() {
		return
	}
	minimum, _ := toChainVersions(snap.Versions).For(u.Roles)
	if running.Less(minimum) {
		u.Log.WithFields(logrus.Fields{"running": running.String(), "min": minimum.String()}).
			Error("the running release is below the chain's minimum: its services may be dropped from the protocol")
	}
}

// attempt does what the decision for snap says; an error means "retry". An
// upgrade that waits for its window or spread returns how long it waits.
func (u *Upgrader) attempt(ctx context.Context, snap chain.Snapshot) (time.Duration, error) {
	d := u.Decide(snap)
	running := u.Running()
	log := u.Log.WithFields(logrus.Fields{"running": running.String(), "min": d.Min.String(), "target": d.Target.String()})
	if d.WarnLoweredTarget {
		u.lastWarned = d.Target
		log.Warn("the chain's target is below the running release; keeping the running release")
	}
	if d.BelowMin {
		log.Error("the running release is below the chain's minimum")
	}
	if d.Wanted.IsZero() {
		u.setPending(nil)
		log.WithField("reason", d.Reason).Debug("no upgrade")
		return 0, nil
	}
	if err := u.somethingToMove(); err != nil {
		u.setPending(nil) // nothing waits for a window either
		return 0, err
	}
	if wait, err := u.Hold(ctx, d); wait > 0 || err != nil {
		return wait, err
	}
	log.WithFields(logrus.Fields{"wanted": d.Wanted.String(), "reason": d.Reason}).Info("upgrade due")
	return 0, u.Upgrade(ctx, running, d.Candidates, toChainVersions(snap.Versions))
}

// journal writes the journal's next step before it is taken.
func (u *Upgrader) journal(j *Journal) error {
	j.Updated = time.Now().UTC()
	jc := *j
	return u.State.Update(func(s *State) { s.Journal = &jc })
}

// finish records the outcome. A failed write is kept in memory and written
// at the next poll (State.Flush): it never stops what called it.
func (u *Upgrader) finish(from, to chain.Version, result string) {
	rec := UpgradeRecord{From: from.String(), To: to.String(), Result: result, At: time.Now().UTC()}
	var took time.Duration
	if j := u.State.Get().Journal; j != nil && !j.Started.IsZero() {
		took = rec.At.Sub(j.Started)
	}
	if err := u.State.Update(func(s *State) { s.Journal = nil; s.LastUpgrade = &rec }); err != nil {
		u.Log.WithError(err).Error("record upgrade result; it is written again at every poll")
	}
	if u.OnResult != nil {
		u.OnResult(rec, took)
	}
}

// errNothingToMove: an upgrade is due but no lavap service runs to move and
// prove the release on (every one held stopped by the operator or ended).
var errNothingToMove = errors.New("no lavap service is running to move (held stopped or ended)")

// somethingToMove returns errNothingToMove when no service would prove a new
// release: a held service started later would run it with no probation
// (found by the simulation, seed 35). `current` stays; the move happens
// once one runs.
func (u *Upgrader) somethingToMove() error {
	if len(u.Services.Upgradable()) == 0 {
		return errNothingToMove
	}
	return nil
}

// failure is why a service failed on the new release.
type failure struct {
	service string
	reason  string // for the log and the bad mark
	exit    *supervisor.Exit
	err     error // it could not be started
	journal bool  // not the release's fault: state.json could not be written
}

// Upgrade moves the services from the running release to the first
// candidate that can be had. When a step fails, the steps before it are
// undone in reverse before it returns.
func (u *Upgrader) Upgrade(ctx context.Context, from chain.Version, candidates []chain.Version, cv ChainVersions) error {
	if err := u.somethingToMove(); err != nil {
		return err
	}
	start := time.Now()
	j := &Journal{From: from.String(), To: candidates[0].String(), Step: StepFetch, Started: start.UTC()}
	if err := u.journal(j); err != nil {
		u.State.Update(func(s *State) { s.Journal = nil })
		return fmt.Errorf("journal the upgrade: %w", err)
	}
	release := u.Prefetch.Hold(candidates[0])
	to, _, err := u.Installer.Obtain(ctx, candidates)
	release()
	if err != nil {
		if ctx.Err() != nil && !mutant.On(mutant.StopIsFailure) {
			// Stopped while fetching: not a failed upgrade. The journal's
			// fetch step tells the next start that nothing was linked.
			return ctx.Err()
		}
		u.finish(from, candidates[0], ResultFailed)
		return err
	}
	j.To, j.Step = to.String(), StepSwap
	if err := u.journal(j); err != nil {
		u.State.Update(func(s *State) { s.Journal = nil })
		return fmt.Errorf("journal the swap to %s: %w", to.Tag(), err)
	}
	if err := u.Installer.LinkCurrent(to); err != nil {
		// Nothing moved; `current` may still be the old link or gone: put
		// it back (best effort, repaired at every poll otherwise).
		u.repairCurrent()
		u.finish(from, to, ResultFailed)
		return err
	}
	u.setRunning(to)
	if mutant.On(mutant.LinkDecides) {
		if err := u.Installer.LinkSystem(to); err != nil {
			u.finish(from, to, ResultFailed)
			return err
		}
	}
	u.Log.WithFields(logrus.Fields{"from": from.String(), "to": to.String()}).Info("linked the new release; restarting services")
	j.Step = StepRestart
	if err := u.journal(j); err != nil {
		return u.rollback(ctx, j, from, to, &failure{reason: fmt.Sprintf("journal the restart on %s: %v", to.Tag(), err), journal: true}, cv)
	}
	f, err := u.restartAll(ctx, j)
	if err != nil {
		return err // ctx ended: the journal says where we were
	}
	if f != nil {
		return u.rollback(ctx, j, from, to, f, cv)
	}
	if len(j.Moved) == 0 {
		// Every service was held or ended meanwhile: nothing proved the
		// release, and a held one started later would run it unproven.
		u.Log.WithFields(logrus.Fields{"from": from.String(), "to": to.String()}).Warn("no lavap service moved (held stopped or ended meanwhile); back to the release before, the move waits until one runs")
		u.unmove(from)
		return errNothingToMove
	}
	u.finish(from, to, ResultSuccess)
	u.Log.WithFields(logrus.Fields{"from": from.String(), "to": to.String(), "took": time.Since(start).Round(time.Millisecond).String()}).Info("upgrade done")
	u.linkSystem()
	u.prune(from, to)
	return nil
}

// restartAll restarts the upgradable services on the linked release, each on
// probation; it returns the first failure. A service that ended for good or
// was removed meanwhile is skipped: there is nothing to move.
func (u *Upgrader) restartAll(ctx context.Context, j *Journal) (*failure, error) {
	names := u.Services.Upgradable()
	if u.Rolling {
		for _, name := range names {
			st, f, err := u.restartOne(ctx, name)
			if err != nil || f != nil {
				if f != nil {
					j.Moved = appendOnce(j.Moved, name)
				}
				return f, err
			}
			if st == nil {
				continue
			}
			j.Moved = appendOnce(j.Moved, name)
			if err := u.journal(j); err != nil {
				return &failure{reason: fmt.Sprintf("journal the restart of %s: %v", name, err), journal: true}, nil
			}
			if f, err := u.waitUp(ctx, name, *st); err != nil || f != nil {
				return f, err
			}
		}
		return nil, nil
	}
	type result struct {
		name string
		st   *supervisor.Started
		f    *failure
		err  error
	}
	results := make(chan result, len(names))
	for _, name := range names {
		go func() {
			st, f, err := u.restartOne(ctx, name)
			results <- result{name, st, f, err}
		}()
	}
	var all []result
	for range names {
		r := <-results
		if r.st != nil || r.f != nil {
			j.Moved = appendOnce(j.Moved, r.name)
		}
		all = append(all, r)
	}
	for _, r := range all {
		if r.err != nil || r.f != nil {
			return r.f, r.err
		}
	}
	if err := u.journal(j); err != nil {
		return &failure{reason: fmt.Sprintf("journal the restart: %v", err), journal: true}, nil
	}
	for _, r := range all {
		if r.st == nil {
			continue
		}
		if f, err := u.waitUp(ctx, r.name, *r.st); err != nil || f != nil {
			return f, err
		}
	}
	return nil, nil
}

func appendOnce(s []string, name string) []string {
	for _, n := range s {
		if n == name {
			return s
		}
	}
	return append(s, name)
}

// restartOne restarts name on probation. nil Started and nil failure: the
// service is gone (ended for good, removed) and is skipped.
func (u *Upgrader) restartOne(ctx context.Context, name string) (*supervisor.Started, *failure, error) {
	st, err := u.Services.Restart(ctx, name, true)
	switch {
	case err == nil:
		return &st, nil, nil
	case ctx.Err() != nil:
		return nil, nil, ctx.Err()
	case errors.Is(err, supervisor.ErrGone):
		u.Log.WithError(err).WithField("service", name).Info("not moved: the service is gone")
		return nil, nil, nil
	}
	return nil, &failure{service: name, reason: fmt.Sprintf("service %s could not start: %v", name, err), err: err}, nil
}

// waitUp waits out name's probation: up for its min-uptime and, with a
// health check, seen healthy before its start period ends (SPEC §7). A
// reload that replaces the service, or an operator's restart of it, meanwhile
// restarts it on the new release: its probation starts again.
func (u *Upgrader) waitUp(ctx context.Context, name string, st supervisor.Started) (*failure, error) {
	for {
		var healthy, periodOver <-chan struct{}
		if st.Health != nil {
			healthy, periodOver = st.Health.Healthy(), st.Health.StartPeriodOver()
		}
		up := time.NewTimer(st.MinUptime)
		upDone, isHealthy := false, st.Health == nil
		replaced := false
		for !(upDone && isHealthy) && !replaced {
			select {
			case e := <-st.Early:
				up.Stop()
				when := "before its min-uptime"
				if upDone {
					when = "before it was healthy"
				}
				return &failure{service: name, exit: &e, reason: fmt.Sprintf("service %s exited (%s) %s", name, e.String(), when)}, nil
			case <-up.C:
				upDone = true
			case <-healthy:
				isHealthy, healthy = true, nil
			case <-periodOver:
				periodOver = nil
				select {
				case <-st.Health.Healthy():
					isHealthy, healthy = true, nil
				default:
					up.Stop()
					return &failure{service: name, reason: fmt.Sprintf("service %s was not healthy within its start period (%s)", name, healthReason(st))}, nil
				}
			case <-st.Gone:
				replaced = true
			case <-ctx.Done():
				up.Stop()
				return nil, ctx.Err()
			}
		}
		up.Stop()
		if !replaced {
			return nil, nil
		}
		u.Log.WithFields(logrus.Fields{"service": name, "was": st.PID}).Info("the service on probation was restarted or replaced meanwhile; its probation starts again")
		next, f, err := u.restartOne(ctx, name)
		if err != nil || f != nil {
			return f, err
		}
		if next == nil {
			return nil, nil // removed by the reload
		}
		st = *next
	}
}

// healthReason names the failed check and its last error: "health: GET
// http://...: 503", "health: GET http://...: timeout after 2s".
func healthReason(st supervisor.Started) string {
	last := st.Health.Status().LastError
	switch {
	case last == "":
		return "health: " + st.HealthCheck + ": no answer yet"
	case strings.HasPrefix(last, "timeout"):
		return "health: " + st.HealthCheck + ": " + last
	}
	return "health: " + last
}

// rollback puts the moved services back on from, marks to bad (unless the
// failure was state.json's), and links `current` back. No failure of a step
// stops the ones after it: a journal that cannot be written is written
// later, a `current` that cannot be linked is repaired at every poll, and
// the services are restarted on from in every case.
func (u *Upgrader) rollback(ctx context.Context, j *Journal, from, to chain.Version, f *failure, cv ChainVersions) error {
	reason := f.reason + " on " + to.Tag()
	fields := logrus.Fields{"release": to.String(), "reason": reason}
	if f.service != "" {
		fields["service"] = f.service
	}
	if f.exit != nil {
		fields["exit_code"] = f.exit.Code()
		if lines := u.Services.LastLines(f.service, 10); len(lines) > 0 {
			fields["last_lines"] = strings.Join(lines, "\n")
		}
	}
	u.Log.WithFields(fields).Error("new release failed; rolling back to " + from.String())
	if from.IsZero() {
		u.finish(from, to, ResultRolledBack)
		return errors.New(reason + "; no earlier release to roll back to")
	}
	// The services' release first: nothing after this can start one on to.
	u.setRunning(from)
	// The bad mark and the rollback step are written together: a LavaVisor
	// killed right after must not try the bad release again.
	j.Step, j.Updated = StepRollback, time.Now().UTC()
	jc := *j
	if err := u.State.Update(func(s *State) {
		s.Journal = &jc
		if f.journal {
			return
		}
		if s.Bad == nil {
			s.Bad = map[string]BadMark{}
		}
		s.Bad[to.String()] = BadMark{At: time.Now().UTC(), Reason: reason, Chain: cv}
	}); err != nil {
		if mutant.On(mutant.RollbackStopsOnJournal) {
			return fmt.Errorf("journal rollback: %w", err)
		}
		u.Log.WithError(err).Error("journal the rollback; rolling back anyway, state.json is written again at every poll")
	}
	u.repairCurrent()
	moved := map[string]bool{}
	if f.service != "" {
		moved[f.service] = true
	}
	for _, n := range j.Moved {
		moved[n] = true
	}
	for _, name := range u.Services.Upgradable() {
		// The moved ones, and any other that started on the bad release
		// meanwhile (added by a reload, restarted by its policy or by
		// restart-after while `current` named it).
		// One with no process visible yet counts too: a replacement a
		// reload launched as the rollback began may be starting on the bad
		// release (seed 214); a restart of it is answered by a start on
		// the release put back.
		if rel := u.Services.RunningRelease(name); !moved[name] && rel != "" && rel != to.Tag() {
			continue
		}
		if _, err := u.Services.Restart(ctx, name, false); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			u.Log.WithError(err).WithField("service", name).Error("restart on the previous release")
		}
	}
	u.finish(from, to, ResultRolledBack)
	if f.journal {
		return errors.New(reason)
	}
	u.Log.WithFields(logrus.Fields{"release": from.String(), "bad": to.String()}).Error("rolled back; the new release is marked bad until the chain's versions change or bad-release-retry passes")
	return nil
}

// unmove puts `current` and the services' release back on from after a
// move that no service took part in; it is not a failure of the release.
func (u *Upgrader) unmove(from chain.Version) {
	u.setRunning(from)
	if err := u.State.Update(func(s *State) { s.Journal = nil }); err != nil {
		u.Log.WithError(err).Error("clear the journal; state.json is written again at every poll")
	}
	u.repairCurrent()
}

// flushState writes state.json if a change could not be written before; it
// logs when writing fails first and when it works again, not every poll.
func (u *Upgrader) flushState() {
	if !u.State.Dirty() {
		return
	}
	err := u.State.Flush()
	switch {
	case err != nil && !u.stateFailing:
		u.Log.WithError(err).Error("state.json cannot be written; retrying at every poll")
	case err == nil && u.stateFailing:
		u.Log.Info("state.json written again")
	}
	u.stateFailing = err != nil
}

// repairCurrent points `current` at the running release if it does not.
func (u *Upgrader) repairCurrent() {
	running := u.Running()
	if running.IsZero() {
		return
	}
	msg := ""
	if cur, err := u.Installer.Current(); err != nil || cur != running {
		if err := u.Installer.LinkCurrent(running); err != nil {
			msg = err.Error()
			u.Log.WithError(err).WithField("release", running.Tag()).Error("`current` does not name the running release and cannot be linked; the services stay where they run, retrying at every poll")
		} else {
			u.Log.WithField("release", running.Tag()).Info("`current` repaired: it names the running release again")
		}
	}
	u.mu.Lock()
	u.links.CurrentError = msg
	u.mu.Unlock()
}

// linkSystem makes the system-path link name the running release, best
// effort: a failure is a warning, retried at every poll.
func (u *Upgrader) linkSystem() {
	running := u.Running()
	if running.IsZero() {
		return
	}
	u.mu.Lock()
	was := u.links.SystemLinkErr
	u.mu.Unlock()
	msg := ""
	if err := u.Installer.LinkSystem(running); err != nil {
		msg = err.Error()
		if was == "" {
			// Once per failure, not at every poll (the message names a
			// new temporary file each time).
			u.Log.WithError(err).Warn("system-path link not made (a convenience for your shell: the services are not affected); retrying at every poll")
		}
	} else if was != "" {
		u.Log.WithField("link", u.Installer.SystemLink).Info("system-path link made")
	}
	u.mu.Lock()
	u.links.SystemLink, u.links.SystemLinkErr = u.Installer.SystemLink, msg
	u.mu.Unlock()
}

// repairLinks brings both links to the running release.
func (u *Upgrader) repairLinks() {
	u.repairCurrent()
	u.linkSystem()
}

// watchStart watches services started on a release linked at start (journal
// step "start") through their probation (min-uptime, and health when they
// have a check), and rolls back if one fails.
func (u *Upgrader) watchStart(ctx context.Context, j Journal) error {
	from, _ := chain.ParseVersion(j.From)
	to, err := chain.ParseVersion(j.To)
	if err != nil {
		return nil
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type outcome struct {
		f   *failure
		err error
	}
	var n int
	results := make(chan outcome, 16)
	for _, name := range u.Services.Upgradable() {
		st, ok := u.Services.FirstStart(name)
		if !ok {
			continue
		}
		j.Moved = append(j.Moved, name)
		n++
		if st.PID == 0 {
			results <- outcome{f: &failure{service: name, reason: fmt.Sprintf("service %s could not start", name)}}
			continue
		}
		go func() {
			f, err := u.waitUp(wctx, name, st)
			results <- outcome{f, err}
		}()
	}
	for range n {
		r := <-results
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if r.f == nil {
			continue
		}
		cancel() // the others' probation no longer matters: all go back
		cv := u.ProbationChain
		if st := u.State.Get(); cv.IsZero() && st.Chain != nil {
			cv = st.Chain.ChainVersions
		}
		err := u.rollback(ctx, &j, from, to, r.f, cv)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			u.Log.WithError(err).Error("rollback at start")
		}
		return nil
	}
	if n == 0 && !from.IsZero() {
		// No service started on it (every one held by the operator): nothing
		// proved it, so it is not kept; the move happens once one runs.
		u.Log.WithFields(logrus.Fields{"from": from.String(), "to": to.String()}).Warn("no lavap service started on the release linked at start (held stopped); back to the release before, the move waits until one runs")
		u.unmove(from)
		return nil
	}
	u.Log.WithFields(logrus.Fields{"from": from.String(), "to": to.String()}).Info("upgrade done: services stayed up on the release linked at start")
	u.finish(from, to, ResultSuccess)
	u.linkSystem()
	u.prune(from, to)
	return nil
}

func (u *Upgrader) prune(from, to chain.Version) {
	if u.KeepReleases <= 0 {
		return
	}
	// Never a release that a proposal in voting would need (SPEC §8).
	protect := append([]chain.Version{from, to}, u.Prefetch.Protected()...)
	removed, err := u.Installer.Store.Prune(u.KeepReleases, protect...)
	if err != nil {
		u.Log.WithError(err).Warn("prune old releases")
	}
	for _, v := range removed {
		u.Log.WithField("release", v.Tag()).Info("pruned old release")
	}
}
