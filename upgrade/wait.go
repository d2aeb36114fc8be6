package upgrade

import (
	"context"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/lavavisor/lavavisor/chain"
)

// Pending is an upgrade that waits for its window or spread (SPEC §10), as
// `status` and `check` show it.
type Pending struct {
	To         string    `json:"to"`
	Reason     string    `json:"reason"`
	NotBefore  time.Time `json:"not_before"`
	WaitingFor string    `json:"waiting_for"` // WaitWindow or WaitSpread
}

// Pending is the upgrade waiting now, nil when none.
func (u *Upgrader) Pending() *Pending {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.pending == nil {
		return nil
	}
	p := *u.pending
	return &p
}

// setPending records the waiting upgrade; it reports whether it changed.
func (u *Upgrader) setPending(p *Pending) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	changed := (p == nil) != (u.pending == nil) || p != nil && *p != *u.pending
	u.pending = p
	return changed
}

// Clock is the upgrader's time: Now when set (a test seam), else the wall
// clock.
func (u *Upgrader) Clock() time.Time {
	if u.Now != nil {
		return u.Now()
	}
	return time.Now()
}

// PendingFor says whether the upgrade d decides waits at now, and until when.
// The spread counts from when this instance first saw the target (state.json);
// a target not recorded yet counts as seen now. It writes nothing (`check`).
func (u *Upgrader) PendingFor(d Decision, now time.Time) *Pending {
	if !d.TargetOnly || u.Schedule.IsZero() {
		return nil
	}
	seen := now
	if ts := u.State.Get().TargetSeen; ts != nil && ts.Target == d.Target.String() {
		seen = ts.At
	}
	w := u.Schedule.Next(now, seen)
	if w.Now() {
		return nil
	}
	return &Pending{
		To:         d.Wanted.String(),
		Reason:     fmt.Sprintf("%s only follows the target (the running release is at or above the minimum %s): it waits for %s", d.Wanted, d.Min, u.Schedule),
		NotBefore:  w.NotBefore.UTC(),
		WaitingFor: w.WaitingFor,
	}
}

// Hold makes the target-only upgrade d wait for its window and spread (SPEC
// §10). The release is fetched and verified at once, so that only the swap
// waits. It returns how long to wait, 0 to go now; an error when the release
// cannot be had (retried as a failed upgrade).
func (u *Upgrader) Hold(ctx context.Context, d Decision) (time.Duration, error) {
	if !d.TargetOnly || u.Schedule.IsZero() {
		u.setPending(nil)
		return 0, nil
	}
	now := u.Clock()
	u.seeTarget(d.Target, now)
	p := u.PendingFor(d, now)
	if p == nil {
		u.setPending(nil)
		return 0, nil
	}
	u.held = d
	log := u.Log.WithFields(logrus.Fields{"to": p.To, "not_before": p.NotBefore.Format(time.RFC3339), "waiting_for": p.WaitingFor})
	if u.setPending(p) {
		log.WithField("reason", p.Reason).Info("upgrade waits")
	}
	if u.prepared != d.Wanted {
		v, _, err := u.Installer.Obtain(ctx, d.Candidates)
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, fmt.Errorf("get %s ahead of its swap: %w", d.Wanted.Tag(), err)
		}
		// Once per release, also when a fallback came instead: the swap
		// tries the candidates again.
		u.prepared = d.Wanted
		log.WithField("release", v.Tag()).Info("release ready; only the swap waits")
	}
	return p.NotBefore.Sub(now), nil
}

// stillWaiting looks again at the schedule of the upgrade that waits,
// without deciding again (a decision verifies every release, a sha256 of
// each): how long it still waits, 0 when its time came or nothing waits.
func (u *Upgrader) stillWaiting() time.Duration {
	if u.Pending() == nil {
		return 0
	}
	now := u.Clock()
	p := u.PendingFor(u.held, now)
	if p == nil {
		return 0
	}
	u.setPending(p)
	return p.NotBefore.Sub(now)
}

// seeTarget records when target was first seen, once per target.
func (u *Upgrader) seeTarget(target chain.Version, now time.Time) {
	if ts := u.State.Get().TargetSeen; ts != nil && ts.Target == target.String() {
		return
	}
	rec := TargetSeen{Target: target.String(), At: now.UTC()}
	if err := u.State.Update(func(s *State) { s.TargetSeen = &rec }); err != nil {
		u.Log.WithError(err).Warn("record when the target was first seen; a restart before state.json is written waits its spread again")
	}
}
