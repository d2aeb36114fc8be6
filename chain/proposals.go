package chain

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
)

// ProposalsRead is one read of the version proposals in voting period, with
// the chain's versions they apply over.
type ProposalsRead struct {
	Proposals []Proposal
	Current   Versions
	Err       error // the read failed: Proposals is empty, nothing ended
	At        time.Time
}

// fastWindow bounds the fast polling around a voting end (SPEC §8).
const (
	fastLead      = 30 * time.Second
	fastAfter     = 10 * time.Minute
	fastInterval  = time.Second
	followedCount = 3
)

// errNoProposals is the answer of a source that cannot list proposals.
var errNoProposals = errors.New("this source does not list proposals")

// ReadProposals lists the version proposals of src (error when it cannot).
func ReadProposals(ctx context.Context, src Source) ([]Proposal, error) {
	ps, ok := src.(ProposalSource)
	if !ok {
		return nil, errNoProposals
	}
	return ps.Proposals(ctx)
}

// safeReadProposals turns a panic of the decoding of a node's bytes into a
// failed read, as poll does for the versions.
func safeReadProposals(ctx context.Context, src Source) (ps []Proposal, err error) {
	defer func() {
		if r := recover(); r != nil {
			ps, err = nil, fmt.Errorf("panic while reading proposals from %s: %v", src, r)
		}
	}()
	return ReadProposals(ctx, src)
}

// readProposals reads the proposals when due and publishes the read; a
// failure is published too (status shows it) and never fails the poll.
func (p *Poller) readProposals(ctx context.Context, src Source, interval time.Duration) {
	p.mu.Lock()
	on, due, last, hasLast := p.proposalsOn, p.nextProposals, p.last, p.hasLast
	subs := p.proposalSubs
	p.mu.Unlock()
	now := time.Now()
	if !on || !hasLast || now.Before(due) {
		return
	}
	ps, err := safeReadProposals(ctx, src)
	if ctx.Err() != nil {
		return
	}
	r := ProposalsRead{Proposals: ps, Current: last.Versions, Err: err, At: now}
	if err != nil {
		r.Err = boundedError{err}
	}
	p.mu.Lock()
	p.nextProposals = now.Add(interval)
	if err == nil {
		p.watch(r)
	}
	p.mu.Unlock()
	for _, ch := range subs {
		publish(ch, r)
	}
}

// watch keeps the voting ends of the followed proposals (the first three by
// voting end with valid versions) and notes one that left the voting period:
// the versions are then read once more at the fast pace. Called with mu held.
func (p *Poller) watch(r ProposalsRead) {
	ends := map[uint64]time.Time{}
	for _, pr := range r.Proposals {
		if len(ends) == followedCount {
			break
		}
		if _, err := pr.Versions(r.Current); err == nil {
			ends[pr.ID] = pr.VotingEnd
		}
	}
	for id := range p.watched {
		if _, ok := ends[id]; !ok {
			p.readAfter = true
		}
	}
	p.watched = ends
}

// pace is the wait before the next versions read: the fast interval from
// voting_end - max(30 s, 2 blocks) until the proposal left the voting period
// and the versions were read once after, at most 10 minutes past the end.
func (p *Poller) pace(interval time.Duration, now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	fast := min(fastInterval, interval)
	if p.readAfter {
		p.readAfter = false
		return fast // the one read after: fast polling ends with it
	}
	lead := max(fastLead, 2*interval)
	for id, end := range p.watched {
		if !now.Before(end.Add(-lead)) && now.Before(end.Add(fastAfter)) {
			return p.fastLog(fast, true, id)
		}
	}
	return p.fastLog(interval, false, 0)
}

// fastLog logs the start and the end of fast polling. Called with mu held.
func (p *Poller) fastLog(d time.Duration, fast bool, id uint64) time.Duration {
	if fast != p.fast {
		p.fast = fast
		if fast {
			p.log.WithFields(logrus.Fields{"proposal": id, "voting_end": p.watched[id].Format(time.RFC3339), "every": d.String()}).
				Info("a followed proposal's voting ends soon: polling the versions fast")
		} else if !fast {
			p.log.Info("no followed proposal's voting is ending: polling at the usual interval")
		}
	}
	return d
}

// SubscribeProposals returns a channel that receives every proposals read
// (latest wins, as Subscribe).
func (p *Poller) SubscribeProposals() <-chan ProposalsRead {
	ch := make(chan ProposalsRead, 1)
	p.mu.Lock()
	p.proposalSubs = append(p.proposalSubs, ch)
	p.mu.Unlock()
	return ch
}

// SetProposals turns the proposals reads on or off (the prefetch setting,
// reloadable); turned on, the next poll reads them.
func (p *Poller) SetProposals(on bool) {
	p.mu.Lock()
	if on && !p.proposalsOn {
		p.nextProposals = time.Time{}
	}
	p.proposalsOn = on
	if !on {
		p.watched, p.readAfter = nil, false
	}
	p.mu.Unlock()
}
