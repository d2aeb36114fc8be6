package upgrade

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/lavavisor/lavavisor/chain"
)

// States of a proposal's pre-fetch (SPEC §8), in status and metrics.
const (
	PrefetchReady       = "ready"        // the release it would need is in the releases folder
	PrefetchFetching    = "fetching"     // being downloaded, or about to be
	PrefetchFailed      = "failed"       // could not be had; retried with the §6.7 delay
	PrefetchNotNeeded   = "not_needed"   // if it passed, no upgrade would follow
	PrefetchNotFollowed = "not_followed" // invalid versions, beyond the 3 followed, or ended
)

// MaxFollowed bounds the proposals whose release is pre-fetched.
const MaxFollowed = 3

// maxEnded bounds the ended proposals still shown in status.
const maxEnded = 5

// ProposalStatus is one version proposal as status and check show it.
type ProposalStatus struct {
	ID             uint64    `json:"id"`
	ProviderTarget string    `json:"provider_target"`
	ProviderMin    string    `json:"provider_min"`
	ConsumerTarget string    `json:"consumer_target"`
	ConsumerMin    string    `json:"consumer_min"`
	VotingEnd      time.Time `json:"voting_end"`
	Release        string    `json:"release"` // the release it would need; "" for none
	Prefetch       string    `json:"prefetch"`
	Reason         string    `json:"reason"`
	// Ended: it left the voting period (passed or rejected); shown for a
	// while, its reason says how it ended.
	Ended bool `json:"-"`
}

// PlanInput is what deciding the releases of proposals looks at.
type PlanInput struct {
	Read    chain.ProposalsRead
	Roles   Roles
	Mode    string
	Pin     chain.Version
	Running chain.Version
	Now     time.Time
}

// Plan decides, for each proposal of a read, the release §6.2 would want if
// it passed, and which proposals are followed: the MaxFollowed earliest
// voting ends, one per release (a later proposal for a followed release
// shares its state). The states of followed ones are left "" for the caller.
func Plan(in PlanInput) []ProposalStatus {
	var out []ProposalStatus
	followed := map[chain.Version]bool{}
	for _, p := range in.Read.Proposals {
		ps := ProposalStatus{ID: p.ID, VotingEnd: p.VotingEnd}
		v, err := p.Versions(in.Read.Current)
		if err != nil {
			ps.Prefetch, ps.Reason = PrefetchNotFollowed, "refused: "+err.Error()
			out = append(out, ps)
			continue
		}
		ps.ProviderTarget, ps.ProviderMin = v.ProviderTarget.String(), v.ProviderMin.String()
		ps.ConsumerTarget, ps.ConsumerMin = v.ConsumerTarget.String(), v.ConsumerMin.String()
		d := Decide(Input{Chain: toChainVersions(v), Roles: in.Roles, Running: in.Running, Mode: in.Mode, Pin: in.Pin, Now: in.Now})
		switch {
		case d.Wanted.IsZero():
			ps.Prefetch, ps.Reason = PrefetchNotNeeded, "if it passes: "+d.Reason
		case followed[d.Wanted]:
			ps.Release = d.Wanted.String()
		case len(followed) == MaxFollowed:
			ps.Release = d.Wanted.String()
			ps.Prefetch, ps.Reason = PrefetchNotFollowed, fmt.Sprintf("%d proposals with an earlier voting end are followed", MaxFollowed)
		default:
			followed[d.Wanted] = true
			ps.Release = d.Wanted.String()
		}
		out = append(out, ps)
	}
	return out
}

// releaseState is the pre-fetch of one release.
type releaseState struct {
	state   string // PrefetchReady, PrefetchFetching or PrefetchFailed
	reason  string
	retryAt time.Time
	delay   time.Duration
	fetched bool // installed by the pre-fetcher: pruned if its proposal is rejected
	warned  bool // the auto-download-off warning was given
}

type activeFetch struct {
	v      chain.Version
	cancel context.CancelFunc
	done   chan struct{} // closed once Fetch returned (the releases lock is free)
}

type fetchResult struct {
	v   chain.Version
	err error
}

// PrefetchSettings are the pre-fetcher's reloadable settings.
type PrefetchSettings struct {
	Enabled      bool
	Fetcher      *Fetcher // nil: only check and warn
	Roles        Roles
	Mode         string
	Pin          chain.Version
	KeepReleases int // 0: never remove a release (a shared releases folder)
}

// Prefetcher fetches, in the background, the release each followed
// version proposal would need if it passed (SPEC §8). It never touches
// `current` nor a service; an upgrade holds it (Hold) so that a required
// download never waits behind a pre-fetch of another release.
type Prefetcher struct {
	Store    *Store
	Reads    <-chan chain.ProposalsRead
	Running  func() chain.Version
	Interval time.Duration // the first retry delay (SPEC §6.7)
	MaxRetry time.Duration // 0: 5 min
	Log      *logrus.Entry

	initOnce sync.Once
	kickc    chan struct{}
	results  chan fetchResult

	mu       sync.Mutex
	settings PrefetchSettings
	status   []ProposalStatus
	readErr  string
	held     int
	active   *activeFetch

	// Only touched by Run's goroutine.
	last     *chain.ProposalsRead
	releases map[chain.Version]*releaseState
	ended    []ProposalStatus
	// leaving: proposals that left the voting period at the last read,
	// judged at the next one. A poll reads the versions, then the
	// proposals: the block that ends a vote can land between the two, and
	// the versions read with the proposal's departure may predate what it
	// set (it would pass for rejected, its release pruned and downloaded
	// again at the swap).
	leaving []ProposalStatus
}

// NewPrefetcher makes a pre-fetcher with its first settings.
func NewPrefetcher(s PrefetchSettings) *Prefetcher {
	return &Prefetcher{settings: s}
}

func (p *Prefetcher) init() {
	p.initOnce.Do(func() {
		p.kickc = make(chan struct{}, 1)
		p.results = make(chan fetchResult, 1)
		p.releases = map[chain.Version]*releaseState{}
		if p.MaxRetry == 0 {
			p.MaxRetry = 5 * time.Minute
		}
		if p.Interval <= 0 {
			p.Interval = chain.DefaultPollInterval
		}
		if p.Log == nil {
			p.Log = discardLog()
		}
	})
}

func (p *Prefetcher) kick() {
	select {
	case p.kickc <- struct{}{}:
	default:
	}
}

// Reconfigure applies new settings (a reload) at once.
func (p *Prefetcher) Reconfigure(s PrefetchSettings) {
	if p == nil {
		return
	}
	p.init()
	p.mu.Lock()
	p.settings = s
	p.mu.Unlock()
	p.kick()
}

// Enabled says whether proposals are read at all.
func (p *Prefetcher) Enabled() bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.settings.Enabled
}

// Status is the proposals as last planned, followed by those that ended
// lately, and why proposals could not be read ("" when they were).
func (p *Prefetcher) Status() ([]ProposalStatus, string) {
	if p == nil {
		return nil, ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]ProposalStatus(nil), p.status...), p.readErr
}

// Hold keeps new pre-fetches from starting until release is called, and
// cancels a running one of another release than wanted, waiting until it
// has let go of the releases lock: an upgrade's download never waits behind
// it. A pre-fetch of wanted itself goes on: the upgrade then finds it done.
func (p *Prefetcher) Hold(wanted chain.Version) (release func()) {
	if p == nil {
		return func() {}
	}
	p.init()
	p.mu.Lock()
	p.held++
	a := p.active
	p.mu.Unlock()
	if a != nil && a.v != wanted {
		p.Log.WithFields(logrus.Fields{"prefetch": a.v.String(), "wanted": wanted.String()}).Info("an upgrade is due: cancelling the pre-fetch of another release")
		a.cancel()
		<-a.done
	}
	return func() {
		p.mu.Lock()
		p.held--
		p.mu.Unlock()
		p.kick()
	}
}

// Protected are the releases that proposals in voting would need: never pruned.
func (p *Prefetcher) Protected() []chain.Version {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var vs []chain.Version
	for _, s := range p.status {
		if v, err := chain.ParseVersion(s.Release); err == nil && !s.Ended {
			vs = append(vs, v)
		}
	}
	return vs
}

// Run follows the proposals until ctx ends; a pre-fetch in flight is
// cancelled then (its temporary files go, nothing is installed).
func (p *Prefetcher) Run(ctx context.Context) error {
	p.init()
	var retry *time.Timer
	defer func() {
		p.mu.Lock()
		a := p.active
		p.mu.Unlock()
		if a != nil {
			a.cancel()
			<-a.done
		}
	}()
	for {
		var retryc <-chan time.Time
		if retry != nil {
			retryc = retry.C
		}
		select {
		case <-ctx.Done():
			return nil
		case r := <-p.Reads:
			p.take(r)
		case res := <-p.results:
			p.finished(res)
		case <-p.kickc:
		case <-retryc:
		}
		next := p.plan(ctx)
		if retry != nil {
			retry.Stop()
			retry = nil
		}
		if !next.IsZero() {
			retry = time.NewTimer(time.Until(next))
		}
	}
}

// take records a read: proposals that left the voting period ended, and
// a change of the chain's versions resets the retry delays.
func (p *Prefetcher) take(r chain.ProposalsRead) {
	if r.Err != nil {
		p.mu.Lock()
		was := p.readErr
		p.readErr = r.Err.Error()
		p.mu.Unlock()
		if was == "" {
			p.Log.WithError(r.Err).Warn("proposals: unavailable; the versions are still polled, pre-fetch waits for the next read")
		}
		return
	}
	p.mu.Lock()
	wasErr := p.readErr
	p.readErr = ""
	old := p.status
	p.mu.Unlock()
	if wasErr != "" {
		p.Log.Info("proposals: read again")
	}
	if p.last != nil && p.last.Current != r.Current {
		for _, s := range p.releases {
			s.delay, s.retryAt = 0, time.Time{}
		}
	}
	// Judged on versions read after the read that saw them leave.
	for _, s := range p.leaving {
		p.endProposal(s, r)
	}
	p.leaving = p.leaving[:0]
	still := map[uint64]bool{}
	for _, pr := range r.Proposals {
		still[pr.ID] = true
	}
	for _, s := range old {
		if s.Ended || still[s.ID] {
			continue
		}
		p.leaving = append(p.leaving, s)
	}
	p.last = &r
}

// endProposal records a proposal that left the voting period. It passed if
// the chain's versions are now what it set; otherwise it was rejected (or
// failed), and a release pre-fetched only for it is removed first.
func (p *Prefetcher) endProposal(s ProposalStatus, r chain.ProposalsRead) {
	cur := r.Current
	passed := s.ProviderTarget == cur.ProviderTarget.String() && s.ProviderMin == cur.ProviderMin.String() &&
		s.ConsumerTarget == cur.ConsumerTarget.String() && s.ConsumerMin == cur.ConsumerMin.String()
	log := p.Log.WithFields(logrus.Fields{"proposal": s.ID, "voting_end": s.VotingEnd.Format(time.RFC3339)})
	s.Ended, s.Prefetch = true, PrefetchNotFollowed
	if passed {
		s.Reason = "ended: passed, the chain's versions are what it set"
		log.Info("proposal passed")
	} else {
		s.Reason = "ended: rejected (the chain's versions did not change to it)"
		log.Info("proposal ended without changing the chain's versions (rejected)")
		if v, err := chain.ParseVersion(s.Release); err == nil && p.prunable(v, r) {
			if err := p.Store.Remove(v); err != nil {
				log.WithError(err).Warn("remove the release pre-fetched for a rejected proposal")
			} else {
				s.Reason += "; its pre-fetched release " + v.Tag() + " was pruned"
				log.WithField("release", v.Tag()).Info("pruned the release pre-fetched for a rejected proposal")
				delete(p.releases, v)
			}
		}
	}
	p.ended = append([]ProposalStatus{s}, p.ended...)
	if len(p.ended) > maxEnded {
		p.ended = p.ended[:maxEnded]
	}
}

// prunable: fetched by the pre-fetcher, not running, not `current`, not
// needed by a proposal still in voting, and pruning is on.
func (p *Prefetcher) prunable(v chain.Version, r chain.ProposalsRead) bool {
	p.mu.Lock()
	keep := p.settings.KeepReleases
	p.mu.Unlock()
	st := p.releases[v]
	if keep <= 0 || st == nil || !st.fetched || v == p.running() {
		return false
	}
	for _, s := range p.planned(r) {
		if s.Release == v.String() {
			return false
		}
	}
	return true
}

func (p *Prefetcher) running() chain.Version {
	if p.Running == nil {
		return chain.Version{}
	}
	return p.Running()
}

func (p *Prefetcher) planned(r chain.ProposalsRead) []ProposalStatus {
	p.mu.Lock()
	s := p.settings
	p.mu.Unlock()
	return Plan(PlanInput{Read: r, Roles: s.Roles, Mode: s.Mode, Pin: s.Pin, Running: p.running(), Now: time.Now()})
}

// finished records the end of a pre-fetch.
func (p *Prefetcher) finished(res fetchResult) {
	p.mu.Lock()
	p.active = nil
	p.mu.Unlock()
	st := p.releases[res.v]
	if st == nil {
		st = &releaseState{}
		p.releases[res.v] = st
	}
	switch {
	case res.err == nil:
		st.state, st.reason, st.delay, st.retryAt, st.fetched = PrefetchReady, "", 0, time.Time{}, true
	case errors.Is(res.err, context.Canceled):
		st.state = "" // cancelled (an upgrade, a reload): tried again when due
	default:
		if st.delay == 0 {
			st.delay = p.Interval
		} else {
			st.delay = min(2*st.delay, p.MaxRetry)
		}
		st.state, st.reason, st.retryAt = PrefetchFailed, res.err.Error(), time.Now().Add(st.delay)
		for _, s := range p.planned(p.lastRead()) {
			if s.Release != res.v.String() {
				continue
			}
			p.Log.WithError(res.err).WithFields(logrus.Fields{
				"proposal": s.ID, "version": res.v.String(), "voting_end": s.VotingEnd.Format(time.RFC3339), "retry_in": st.delay.String(),
			}).Warn("pre-fetch failed: the release this proposal needs if it passes could not be fetched; place it in the releases folder before the voting end, or fix the download")
		}
	}
}

func (p *Prefetcher) lastRead() chain.ProposalsRead {
	if p.last == nil {
		return chain.ProposalsRead{}
	}
	return *p.last
}

// plan decides each proposal's state, starts the next pre-fetch that is
// due and cancels one no longer needed. It returns when a retry is due.
func (p *Prefetcher) plan(ctx context.Context) (next time.Time) {
	p.mu.Lock()
	s, held, active := p.settings, p.held > 0, p.active
	p.mu.Unlock()
	var out []ProposalStatus
	wanted := map[chain.Version]bool{}
	if s.Enabled && p.last != nil {
		out = p.planned(*p.last)
		for i := range out {
			ps := &out[i]
			if ps.Prefetch != "" {
				continue
			}
			v, _ := chain.ParseVersion(ps.Release)
			st := p.stateOf(v)
			switch {
			case st.state == PrefetchReady:
			case s.Fetcher == nil:
				st.state = PrefetchFailed
				st.reason = fmt.Sprintf("auto-download is off: place %s in %s before %s", v.Tag(), p.Store.Dir, ps.VotingEnd.Format(time.RFC3339))
				if !st.warned {
					st.warned = true
					p.Log.WithFields(logrus.Fields{"proposal": ps.ID, "version": v.String(), "voting_end": ps.VotingEnd.Format(time.RFC3339)}).
						Warn(fmt.Sprintf("a proposal in voting would need %s, which is not in the releases folder and auto-download is off: place %s in %s before %s", v.Tag(), v.Tag(), p.Store.Dir, ps.VotingEnd.Format(time.RFC3339)))
				}
			case active != nil && active.v == v:
				st.state = PrefetchFetching
			case st.state == PrefetchFailed && time.Now().Before(st.retryAt):
				if next.IsZero() || st.retryAt.Before(next) {
					next = st.retryAt
				}
			default:
				wanted[v] = true
				if active == nil && !held {
					active = p.start(ctx, s.Fetcher, v, ps)
					st.state = PrefetchFetching
				} else if st.state != PrefetchFailed {
					st.state = PrefetchFetching // queued behind another
				}
			}
			if active != nil && active.v == v {
				wanted[v] = true
			}
			ps.Prefetch, ps.Reason = st.state, st.reason
		}
	}
	if active != nil && !wanted[active.v] {
		p.Log.WithField("release", active.v.String()).Info("pre-fetch no longer needed by a followed proposal; cancelling it")
		active.cancel()
	}
	p.mu.Lock()
	p.status = append(out, p.ended...)
	p.mu.Unlock()
	return next
}

// stateOf returns the state of v, checking that a ready release is still
// there (an operator may remove it) and that one placed by hand is seen.
func (p *Prefetcher) stateOf(v chain.Version) *releaseState {
	st := p.releases[v]
	if st == nil {
		st = &releaseState{}
		p.releases[v] = st
	}
	if st.state == PrefetchReady {
		if _, err := os.Stat(p.Store.ManifestPath(v)); err != nil {
			st.state = ""
		}
		return st
	}
	if _, err := os.Lstat(p.Store.ReleaseDir(v)); err == nil {
		if _, err := p.Store.Verify(v); err == nil {
			st.state, st.reason = PrefetchReady, ""
		}
	}
	return st
}

// start runs one pre-fetch in the background.
func (p *Prefetcher) start(ctx context.Context, f *Fetcher, v chain.Version, ps *ProposalStatus) *activeFetch {
	fctx, cancel := context.WithCancel(ctx)
	a := &activeFetch{v: v, cancel: cancel, done: make(chan struct{})}
	p.mu.Lock()
	p.active = a
	p.mu.Unlock()
	p.Log.WithFields(logrus.Fields{"proposal": ps.ID, "release": v.Tag(), "voting_end": ps.VotingEnd.Format(time.RFC3339)}).
		Info("pre-fetching the release a proposal in voting would need if it passes")
	go func() {
		_, err := f.Fetch(fctx, p.Store, v)
		if fctx.Err() != nil && err != nil {
			err = context.Canceled
		}
		cancel()
		close(a.done)
		p.results <- fetchResult{v: v, err: err}
	}()
	return a
}
