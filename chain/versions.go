package chain

import (
	"errors"
	"fmt"
	"time"
)

// Versions are the protocol versions the chain requires, each one past the strict
// grammar of SPEC §6.1.
type Versions struct {
	ProviderMin    Version `json:"provider_min" yaml:"provider_min"`
	ProviderTarget Version `json:"provider_target" yaml:"provider_target"`
	ConsumerMin    Version `json:"consumer_min" yaml:"consumer_min"`
	ConsumerTarget Version `json:"consumer_target" yaml:"consumer_target"`
}

// Validate rejects a minimum above its target, and versions that did not come
// through ParseVersion (a Versions built in code with out-of-range numbers).
func (v Versions) Validate() error {
	var errs []error
	for _, f := range v.fields() {
		if !f.v.valid() {
			errs = append(errs, fmt.Errorf("%s: %d.%d.%d out of range", f.key, f.v.Major, f.v.Minor, f.v.Patch))
		}
	}
	if v.ProviderTarget.Less(v.ProviderMin) {
		errs = append(errs, fmt.Errorf("provider_min %s above provider_target %s", v.ProviderMin, v.ProviderTarget))
	}
	if v.ConsumerTarget.Less(v.ConsumerMin) {
		errs = append(errs, fmt.Errorf("consumer_min %s above consumer_target %s", v.ConsumerMin, v.ConsumerTarget))
	}
	return errors.Join(errs...)
}

func (v Versions) String() string {
	return fmt.Sprintf("provider %s..%s, consumer %s..%s", v.ProviderMin, v.ProviderTarget, v.ConsumerMin, v.ConsumerTarget)
}

type versionField struct {
	key string
	v   Version
}

func (v Versions) fields() [4]versionField {
	return [4]versionField{
		{"provider_min", v.ProviderMin}, {"provider_target", v.ProviderTarget},
		{"consumer_min", v.ConsumerMin}, {"consumer_target", v.ConsumerTarget},
	}
}

func (v Version) valid() bool {
	for _, p := range [3]int{v.Major, v.Minor, v.Patch} {
		if p < 0 || p > MaxVersionPart {
			return false
		}
	}
	return true
}

// parseVersions turns the four strings read from a node or a file into Versions:
// every one through ParseVersion (errors quote them truncated), then Validate.
func parseVersions(raw map[string]string) (Versions, error) {
	var v Versions
	dst := map[string]*Version{
		"provider_min": &v.ProviderMin, "provider_target": &v.ProviderTarget,
		"consumer_min": &v.ConsumerMin, "consumer_target": &v.ConsumerTarget,
	}
	var errs []error
	for _, f := range v.fields() { // fixed order, so that messages are stable
		p, err := ParseVersion(raw[f.key])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.key, err))
			continue
		}
		*dst[f.key] = p
	}
	if err := errors.Join(errs...); err != nil {
		return Versions{}, err
	}
	if err := v.Validate(); err != nil {
		return Versions{}, err
	}
	return v, nil
}

// Versions validates the four strings of a decoded Params response.
func (m *QueryParamsResponse) Versions() (Versions, error) {
	p := m.Params.Version
	return parseVersions(map[string]string{
		"provider_min": p.ProviderMin, "provider_target": p.ProviderTarget,
		"consumer_min": p.ConsumerMin, "consumer_target": p.ConsumerTarget,
	})
}

// Snapshot is one answer of a Source.
type Snapshot struct {
	Versions Versions  `json:"versions"`
	Height   int64     `json:"height"`   // block height of the answer; 0 when unknown (file source)
	ChainID  string    `json:"chain_id"` // "" for a file source
	Source   string    `json:"source"`   // which node answered (credentials removed)
	At       time.Time `json:"at"`
	// CatchingUp marks an answer from a node that is still syncing: its versions
	// may be old, so the poller ignores it.
	CatchingUp bool `json:"-"`
}
