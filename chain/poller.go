package chain

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// DefaultMaxBackoff caps the retry delay after failed polls (SPEC §6.7).
const DefaultMaxBackoff = 5 * time.Minute

// heightResetAfter is how many answers in a row below the last accepted height
// make the poller believe them after all: a chain reset or a node restored from
// an old snapshot must not freeze the versions forever, while a load balancer
// flapping between nodes sends a higher answer long before that.
const heightResetAfter = 10

// PollerOptions configure a Poller.
type PollerOptions struct {
	Interval   time.Duration // between polls; DefaultPollInterval when 0
	MaxBackoff time.Duration // cap of the doubling retry delay; DefaultMaxBackoff when 0
	Log        *logrus.Entry
	// Record is called with every accepted snapshot (main keeps state.json with
	// it); an error is logged, and polling goes on.
	Record func(Snapshot) error
	// Initial is the last known snapshot (state.json, or the read at start): the
	// height check starts from it, and Last returns it until a poll answers.
	Initial *Snapshot
	// ChainID, when set, rejects answers from any other chain (a failover node
	// on the wrong network). When empty, the first answer's chain id is kept and
	// enforced from then on.
	ChainID string
	// OnPoll, when set, is called after each poll with its error (nil: the
	// source answered); for metrics. It must not block.
	OnPoll func(err error)
	// Proposals turns on the reads of version proposals (SPEC §8), at
	// Interval, and the fast polling around a followed one's voting end.
	Proposals bool
}

// Poller is the chain actor: it polls a Source, validates each answer (SPEC §6.1)
// and publishes the changes of versions to its subscribers.
type Poller struct {
	src Source
	o   PollerOptions
	log *logrus.Entry

	mu       sync.Mutex
	last     Snapshot
	hasLast  bool
	answered bool // a poll of this run was accepted (the first is always published)
	chainID  string
	subs     []chan Snapshot
	reconfc  chan struct{} // a new source or interval: poll again now

	lowerStreak int // only touched by Run's goroutine

	// Proposals (SPEC §8), under mu.
	proposalsOn   bool
	nextProposals time.Time // when they are read next
	proposalSubs  []chan ProposalsRead
	watched       map[uint64]time.Time // followed proposals' voting ends
	readAfter     bool                 // one left the voting period: read the versions once more, fast
	fast          bool                 // polling fast (logged when it changes)
}

// NewPoller makes a poller; call Subscribe before Run.
func NewPoller(src Source, o PollerOptions) *Poller {
	if o.Interval <= 0 {
		o.Interval = DefaultPollInterval
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	log := o.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = logrus.NewEntry(l)
	}
	p := &Poller{src: src, o: o, log: log, chainID: o.ChainID, reconfc: make(chan struct{}, 1), proposalsOn: o.Proposals}
	if o.Initial != nil {
		p.last, p.hasLast = *o.Initial, true
	}
	return p
}

// Subscribe returns a channel that receives the first accepted answer and then
// every change of versions. It holds one value: a newer one replaces an unread
// older one, so a slow subscriber only ever sees the latest versions.
func (p *Poller) Subscribe() <-chan Snapshot {
	ch := make(chan Snapshot, 1)
	p.mu.Lock()
	p.subs = append(p.subs, ch)
	p.mu.Unlock()
	return ch
}

// Reconfigure makes the poller read src every interval from its next poll,
// which comes at once (SIGHUP, SPEC §5). A chain id that changes starts the
// height check afresh.
func (p *Poller) Reconfigure(src Source, interval time.Duration, chainID string) {
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	p.mu.Lock()
	if chainID != p.o.ChainID {
		p.chainID, p.hasLast, p.answered = chainID, false, false
	}
	p.src, p.o.Interval, p.o.ChainID = src, interval, chainID
	p.mu.Unlock()
	select {
	case p.reconfc <- struct{}{}:
	default:
	}
}

// source is the current source and interval.
func (p *Poller) source() (Source, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.src, p.o.Interval
}

// Last returns the last accepted snapshot (Initial until a poll is accepted).
func (p *Poller) Last() (Snapshot, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last, p.hasLast
}

// Run polls until ctx is done, then returns nil. A failed poll is logged once
// and retried after a delay that doubles from Interval up to MaxBackoff, and
// resets on the next success.
func (p *Poller) Run(ctx context.Context) error {
	src, interval := p.source()
	p.log.WithFields(logrus.Fields{"source": src.String(), "interval": interval}).Debug("chain poller running")
	failures := 0
	for {
		err := p.poll(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if p.o.OnPoll != nil {
			p.o.OnPoll(err)
		}
		src, interval := p.source()
		var wait time.Duration
		if err != nil {
			failures++
			wait = backoff(interval, p.o.MaxBackoff, failures)
			p.log.WithError(boundedError{err}).WithField("retry_in", wait).Warn("chain poll failed")
		} else {
			failures = 0
			// Never a poll error (SPEC §8): a failed read is published.
			p.readProposals(ctx, src, interval)
			wait = p.pace(interval, time.Now())
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-p.reconfc:
			t.Stop()
			failures = 0
		case <-t.C:
		}
	}
}

// backoff is the delay after the n-th failure in a row: base, 2·base, 4·base ... max.
func backoff(base, max time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// poll reads the source once. An error is a failed poll; an answer ignored on
// purpose (a lower height) is not.
func (p *Poller) poll(ctx context.Context) (err error) {
	// The answer is parsed by third-party code (JSON, protobuf, gRPC) from bytes
	// that a node chose; a bug there must cost one poll, not the supervisor and
	// every service under it.
	src, _ := p.source()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic while polling %s: %v", src, r)
		}
	}()
	snap, err := src.Query(ctx)
	if err != nil {
		return err
	}
	log := p.log.WithFields(logrus.Fields{"node": snap.Source, "height": snap.Height})
	if err := snap.Versions.Validate(); err != nil {
		return fmt.Errorf("%s answered invalid versions: %w", snap.Source, err)
	}
	if snap.CatchingUp {
		return fmt.Errorf("%s is catching up (height %d): its answer is ignored", snap.Source, snap.Height)
	}
	p.mu.Lock()
	want, last, hasLast := p.chainID, p.last, p.hasLast
	p.mu.Unlock()
	if want != "" && snap.ChainID != "" && snap.ChainID != want {
		return fmt.Errorf("%w: node %s reports %q, want %q; answer ignored", ErrChainIDMismatch, snap.Source, snap.ChainID, want)
	}
	if hasLast && snap.Height > 0 && snap.ChainID == last.ChainID && snap.Height < last.Height {
		p.lowerStreak++
		if p.lowerStreak < heightResetAfter {
			log.WithField("last_height", last.Height).Debug("chain answer below the last height ignored")
			return nil
		}
		log.WithField("last_height", last.Height).Warn("chain height went back and stays back; accepting it")
	}
	p.lowerStreak = 0
	log.WithField("versions", snap.Versions.String()).Debug("chain polled")
	p.accept(snap, log)
	return nil
}

func (p *Poller) accept(snap Snapshot, log *logrus.Entry) {
	p.mu.Lock()
	first := !p.answered
	changed := first || snap.Versions != p.last.Versions
	p.last, p.hasLast, p.answered = snap, true, true
	if p.chainID == "" {
		p.chainID = snap.ChainID
	}
	subs := p.subs
	p.mu.Unlock()

	if changed {
		log = log.WithFields(logrus.Fields{
			"provider_min": snap.Versions.ProviderMin, "provider_target": snap.Versions.ProviderTarget,
			"consumer_min": snap.Versions.ConsumerMin, "consumer_target": snap.Versions.ConsumerTarget,
		})
		if first {
			log.Info("chain versions")
		} else {
			log.Info("chain versions changed")
		}
		for _, ch := range subs {
			publish(ch, snap)
		}
	}
	if p.o.Record != nil {
		if err := p.o.Record(snap); err != nil {
			log.WithError(err).Warn("recording the chain versions failed")
		}
	}
}

// publish replaces an unread value: subscribers want the latest versions, and
// the poller must never block on a slow one. Only the poller sends, so after
// draining there is room.
func publish[T any](ch chan T, s T) {
	select {
	case ch <- s:
		return
	default:
	}
	select {
	case <-ch:
	default:
	}
	select {
	case ch <- s:
	default:
	}
}
