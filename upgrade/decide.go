package upgrade

import (
	"fmt"
	"time"

	"github.com/lavavisor/lavavisor/chain"
)

// Values of the `upgrade` setting (SPEC §3).
const (
	ModeTarget = "target" // follow the chain's target
	ModeMin    = "min"    // move only when the running release falls below the minimum
)

// ChainVersions are the four protocol versions the chain publishes.
type ChainVersions struct {
	ProviderMin    chain.Version `json:"provider_min"`
	ProviderTarget chain.Version `json:"provider_target"`
	ConsumerMin    chain.Version `json:"consumer_min"`
	ConsumerTarget chain.Version `json:"consumer_target"`
}

// IsZero reports whether no versions are known.
func (c ChainVersions) IsZero() bool { return c == ChainVersions{} }

// For returns the highest minimum and the highest target among the roles in use.
// No role in use (no lavap service yet, as in `init`) counts as both.
func (c ChainVersions) For(r Roles) (minimum, target chain.Version) {
	if !r.Provider && !r.Consumer {
		r = Roles{Provider: true, Consumer: true}
	}
	if r.Provider {
		minimum, target = c.ProviderMin, c.ProviderTarget
	}
	if r.Consumer {
		minimum, target = maxVersion(minimum, c.ConsumerMin), maxVersion(target, c.ConsumerTarget)
	}
	return minimum, target
}

// Roles says which kinds of lavap service are configured.
type Roles struct{ Provider, Consumer bool }

// BadMark records a release that failed after an upgrade (SPEC §6.6).
type BadMark struct {
	At     time.Time     `json:"at"`
	Reason string        `json:"reason"`
	Chain  ChainVersions `json:"chain"` // the chain's versions when it was marked
}

// Input is everything Decide looks at.
type Input struct {
	Chain   ChainVersions
	Roles   Roles
	Running chain.Version // zero: no release running (or linked) yet
	Mode    string        // ModeTarget or ModeMin; anything else counts as ModeTarget
	Pin     chain.Version // zero: none
	// Bad is keyed by version ("6.2.6"). A mark holds until the chain's versions
	// change or BadRetry has passed since it was made; BadRetry 0 means only a
	// change of the chain's versions lifts it (a zero retry would loop).
	Bad      map[string]BadMark
	BadRetry time.Duration
	Now      time.Time
	// Local are the usable releases in the releases folder (Store.Usable).
	Local []chain.Version
	// LastWarnedTarget is the target the lowered-target warning was last given
	// for, so that it is given once.
	LastWarnedTarget chain.Version
}

// Decision is what the upgrader should do.
type Decision struct {
	Wanted chain.Version // zero: nothing to do
	// Candidates, best first: the target, then the highest local release within
	// [Min, Target] above the running one. Never an invented version.
	Candidates []chain.Version
	Min        chain.Version // highest minimum among the roles in use
	Target     chain.Version // highest target among the roles in use
	BelowMin   bool          // the running (or pinned) release is below Min
	// LoweredTarget: the running release is above the target and is kept.
	LoweredTarget bool
	// WarnLoweredTarget: LoweredTarget, and not yet warned about for this target.
	WarnLoweredTarget bool
	// TargetOnly: the move only follows the target; the running release is
	// at or above every minimum, so it may wait for an upgrade window and
	// spread (SPEC §10). Never for a pin or when nothing runs yet.
	TargetOnly bool
	Reason     string // one sentence for the log and `check`
}

// Decide applies SPEC §6.2–6.3. It does no I/O.
func Decide(in Input) Decision {
	var d Decision
	d.Min, d.Target = in.Chain.For(in.Roles)
	run := in.Running

	if !in.Pin.IsZero() {
		return decidePin(in, d)
	}
	if d.Target.IsZero() {
		d.Reason = "the chain's versions are not known yet"
		return d
	}
	span := fmt.Sprintf("the chain wants %s (minimum %s)", d.Target, d.Min)
	if !run.IsZero() {
		d.BelowMin = run.Less(d.Min)
		switch {
		case run == d.Target:
			d.Reason = fmt.Sprintf("running %s: %s; nothing to do", run, span)
			return d
		case d.Target.Less(run):
			d.LoweredTarget = true
			d.WarnLoweredTarget = in.LastWarnedTarget != d.Target
			d.Reason = fmt.Sprintf("running %s, above the target: %s; keeping %s (a lowered target never downgrades)", run, span, run)
			return d
		case in.Mode == ModeMin && !d.BelowMin:
			d.Reason = fmt.Sprintf("running %s: %s; upgrade: min waits until the running release is below the minimum", run, span)
			return d
		}
	}

	var skipped string
	if m, bad := in.activeBad(d.Target); bad {
		skipped = fmt.Sprintf("; %s is marked bad (%s)", d.Target, m.Reason)
	} else {
		d.Candidates = append(d.Candidates, d.Target)
	}
	if fb, ok := in.fallback(d.Min, d.Target); ok {
		d.Candidates = append(d.Candidates, fb)
	}
	from := "no release is running"
	if !run.IsZero() {
		from = "running " + run.String()
		if d.BelowMin {
			from += ", below the minimum"
		}
	}
	if len(d.Candidates) == 0 {
		d.Reason = fmt.Sprintf("%s: %s%s, and no usable local release within [%s, %s] is better", from, span, skipped, d.Min, d.Target)
		return d
	}
	d.Wanted = d.Candidates[0]
	d.TargetOnly = !run.IsZero() && !d.BelowMin
	d.Reason = fmt.Sprintf("%s: %s%s; moving to %s", from, span, skipped, d.Wanted)
	return d
}

func decidePin(in Input, d Decision) Decision {
	pin := in.Pin
	d.BelowMin = !d.Min.IsZero() && pin.Less(d.Min)
	note := ""
	if d.BelowMin {
		note = fmt.Sprintf(" (below the chain's minimum %s: the services may fall out of the protocol)", d.Min)
	}
	switch m, bad := in.activeBad(pin); {
	case in.Running == pin:
		d.Reason = fmt.Sprintf("running the pinned release %s%s", pin, note)
	case bad:
		d.Reason = fmt.Sprintf("the pinned release %s is marked bad (%s)%s; staying on the running one", pin, m.Reason, note)
	default:
		d.Wanted = pin
		d.Candidates = []chain.Version{pin}
		d.Reason = fmt.Sprintf("pin: moving to %s%s", pin, note)
	}
	return d
}

// fallback is the highest local release in [minimum, target) that is better
// than the running one and not marked bad.
func (in Input) fallback(minimum, target chain.Version) (chain.Version, bool) {
	var best chain.Version
	found := false
	for _, v := range in.Local {
		if v.Less(minimum) || !v.Less(target) || (!in.Running.IsZero() && !in.Running.Less(v)) {
			continue
		}
		if _, bad := in.activeBad(v); bad {
			continue
		}
		if !found || best.Less(v) {
			best, found = v, true
		}
	}
	return best, found
}

func (in Input) activeBad(v chain.Version) (BadMark, bool) {
	m, ok := in.Bad[v.String()]
	if !ok || m.Chain != in.Chain {
		return m, false
	}
	if in.BadRetry > 0 && !in.Now.Before(m.At.Add(in.BadRetry)) {
		return m, false
	}
	return m, true
}

func maxVersion(a, b chain.Version) chain.Version {
	if a.Less(b) {
		return b
	}
	return a
}
