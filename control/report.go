package control

import (
	"time"

	"github.com/lavavisor/lavavisor/upgrade"
)

// Report is the answer to `status` (SPEC §4) and `status --json`. Chain and
// LastUpgrade are null when unknown.
type Report struct {
	Services    []ServiceReport `json:"services"`
	Chain       *ChainReport    `json:"chain"`
	LastUpgrade *UpgradeReport  `json:"last_upgrade"`
	// Problems are what the operator should know that no service shows: a
	// `current` that does not name the running release, a system-path link
	// that cannot be made, a state.json that cannot be written.
	Problems []string `json:"problems,omitempty"`
	// Pending is an upgrade waiting for its window or spread (SPEC §10);
	// absent when none waits.
	Pending *upgrade.Pending `json:"pending,omitempty"`
	// Proposals are the version proposals in voting and lately ended, with
	// their pre-fetch (SPEC §8); ProposalsError why they could not be read.
	Proposals      []upgrade.ProposalStatus `json:"proposals"`
	ProposalsError string                   `json:"proposals_error,omitempty"`
}

// ServiceReport is one service in a Report.
type ServiceReport struct {
	Name     string  `json:"name"`
	State    string  `json:"state"`
	PID      int     `json:"pid"`      // 0 when no process runs
	Release  string  `json:"release"`  // "" for a command service
	UptimeS  float64 `json:"uptime_s"` // of the running process; 0 when none
	Restarts int     `json:"restarts"`
	LastExit string  `json:"last_exit"` // "" when no process has ended yet
	// Health is starting, healthy or unhealthy (SPEC §7); "" when no process
	// runs. A service without a check is healthy while it runs.
	Health string `json:"health"`
}

// ChainReport is the chain's last versions in a Report.
type ChainReport struct {
	ProviderMin    string `json:"provider_min"`
	ProviderTarget string `json:"provider_target"`
	ConsumerMin    string `json:"consumer_min"`
	ConsumerTarget string `json:"consumer_target"`
	Height         int64  `json:"height"` // 0 for a file source
}

// UpgradeReport is the last upgrade in a Report.
type UpgradeReport struct {
	From   string    `json:"from"`
	To     string    `json:"to"`
	Result string    `json:"result"`
	At     time.Time `json:"at"`
}
