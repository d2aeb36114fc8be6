package upgrade

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lavavisor/lavavisor/chain"
)

// OpKind is an operator's command to the upgrader (SPEC §9).
type OpKind int

const (
	OpDecide   OpKind = iota // `lavavisor upgrade`: decide now, skipping a retry delay
	OpTo                     // `upgrade --to X`: move to X and pin it
	OpFollow                 // `upgrade --follow`: drop the operator's pin, decide now
	OpRollback               // `rollback`: back to the release before the last upgrade
)

// Op is one operator's command.
type Op struct {
	Kind  OpKind
	To    chain.Version
	Force bool // OpTo below the chain's minimum
}

type opRequest struct {
	Op
	reply chan opReply
}

type opReply struct {
	msg string
	err error
}

var errUpgraderStopped = errors.New("lavavisor is stopping: the upgrader has stopped")

// ErrBusy says an upgrade is in progress; the command may wait for it.
var ErrBusy = errors.New("an upgrade is in progress")

// Do hands op to the running upgrader and waits for its outcome. The
// upgrader takes it between two upgrades: with wait false, an upgrade in
// progress refuses it with ErrBusy and the step it is at.
func (u *Upgrader) Do(ctx context.Context, op Op, wait bool) (string, error) {
	u.init()
	if !wait {
		if desc, busy := u.Busy(); busy {
			return "", fmt.Errorf("%w (%s): try again later, or add --wait to queue it", ErrBusy, desc)
		}
	}
	req := opRequest{Op: op, reply: make(chan opReply, 1)}
	select {
	case u.opc <- req:
	case <-u.stopped:
		return "", errUpgraderStopped
	case <-ctx.Done():
		return "", ctx.Err()
	}
	select {
	case r := <-req.reply:
		return r.msg, r.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Busy reports whether an upgrade is in progress, and where it is.
func (u *Upgrader) Busy() (string, bool) {
	u.mu.Lock()
	busy := u.busy
	u.mu.Unlock()
	if !busy {
		return "", false
	}
	j := u.State.Get().Journal
	if j == nil {
		return "deciding", true
	}
	desc := fmt.Sprintf("%s -> %s, step %s", j.From, j.To, j.Step)
	if len(j.Moved) > 0 {
		desc += ", moved: " + strings.Join(j.Moved, ", ")
	}
	return desc, true
}

// WaitIdle returns once no upgrade is in progress (or ctx ends).
func (u *Upgrader) WaitIdle(ctx context.Context) error {
	u.mu.Lock()
	if !u.busy {
		u.mu.Unlock()
		return nil
	}
	idle := u.idle
	u.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-u.stopped:
		return errUpgraderStopped
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (u *Upgrader) setBusy(b bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case b && !u.busy:
		u.idle = make(chan struct{})
	case !b && u.busy:
		close(u.idle)
	}
	u.busy = b
}

// operate carries out op in the upgrader's loop.
func (u *Upgrader) operate(ctx context.Context, op Op, latest *chain.Snapshot) (string, error) {
	var cv ChainVersions
	if latest != nil {
		cv = toChainVersions(latest.Versions)
	}
	switch op.Kind {
	case OpFollow:
		if err := u.State.Update(func(s *State) { s.OperatorPin = "" }); err != nil {
			u.Log.WithError(err).Error("record the end of the operator's pin; retried at every poll")
		}
		msg, err := u.operate(ctx, Op{Kind: OpDecide}, latest)
		return "following the chain again; " + msg, err
	case OpDecide:
		if latest == nil {
			return "", errors.New("the chain's versions are not known yet: nothing to decide")
		}
		d := u.Decide(*latest)
		if d.Wanted.IsZero() {
			return "nothing to do: " + d.Reason, nil
		}
		from := u.Running()
		if err := u.Upgrade(ctx, from, d.Candidates, cv); err != nil {
			return "", err
		}
		return u.outcome(from)
	case OpTo:
		if !u.Pin.IsZero() {
			return "", fmt.Errorf("config.yml pins %s, which wins over `upgrade --to`: remove pin: from config.yml and reload first", u.Pin)
		}
		minimum, _ := cv.For(u.Roles)
		if op.To.Less(minimum) && !op.Force {
			return "", fmt.Errorf("%s is below the chain's minimum %s: its services may be dropped from the protocol; add --force to move anyway", op.To, minimum)
		}
		return u.moveAndPin(ctx, op.To, "", cv)
	case OpRollback:
		running := u.Running()
		last := u.State.Get().LastUpgrade
		if last == nil || last.Result != ResultSuccess || last.To != running.String() || last.From == "" {
			return "", fmt.Errorf("no upgrade to roll back: the running release %s was not reached by the last successful upgrade", running)
		}
		from, err := chain.ParseVersion(last.From)
		if err != nil {
			return "", fmt.Errorf("no upgrade to roll back: %w", err)
		}
		return u.moveAndPin(ctx, from, "operator rollback", cv)
	}
	return "", fmt.Errorf("unknown operation %d", op.Kind)
}

// moveAndPin moves the services to v and pins it; with markBad, the release
// left is marked bad with that reason. A move that fails or rolls back
// changes nothing: the pin and the marks are as they were.
func (u *Upgrader) moveAndPin(ctx context.Context, v chain.Version, markBad string, cv ChainVersions) (string, error) {
	from := u.Running()
	before := u.State.Get()
	u.State.Update(func(s *State) {
		s.OperatorPin = v.String()
		delete(s.Bad, v.String())
		if markBad != "" && !from.IsZero() {
			if s.Bad == nil {
				s.Bad = map[string]BadMark{}
			}
			s.Bad[from.String()] = BadMark{At: time.Now().UTC(), Reason: markBad, Chain: cv}
		}
	})
	undo := func() {
		u.State.Update(func(s *State) {
			s.OperatorPin = before.OperatorPin
			if m, ok := before.Bad[v.String()]; ok {
				if s.Bad == nil {
					s.Bad = map[string]BadMark{}
				}
				s.Bad[v.String()] = m
			}
			if markBad != "" {
				if m, ok := before.Bad[from.String()]; ok {
					s.Bad[from.String()] = m
				} else {
					delete(s.Bad, from.String())
				}
			}
		})
	}
	if from == v {
		return fmt.Sprintf("already running %s; pinned until `lavavisor upgrade --follow`", v), nil
	}
	if err := u.Upgrade(ctx, from, []chain.Version{v}, cv); err != nil {
		undo()
		return "", fmt.Errorf("moving to %s failed, nothing changed: %w", v, err)
	}
	if u.Running() != v {
		undo()
		return "", fmt.Errorf("moving to %s failed and was rolled back to %s (see the log); the pin was not kept", v, u.Running())
	}
	msg := fmt.Sprintf("moved from %s to %s; pinned until `lavavisor upgrade --follow`", from, v)
	if markBad != "" {
		msg += fmt.Sprintf("; %s is marked bad (%s)", from, markBad)
	}
	return msg, nil
}

// outcome describes what an upgrade from from ended with.
func (u *Upgrader) outcome(from chain.Version) (string, error) {
	running := u.Running()
	if running == from {
		if lu := u.State.Get().LastUpgrade; lu != nil && lu.Result == ResultRolledBack {
			return "", fmt.Errorf("the upgrade to %s was rolled back to %s (see the log)", lu.To, from)
		}
		return "nothing changed: still on " + from.String(), nil
	}
	return fmt.Sprintf("upgraded from %s to %s", from, running), nil
}
