// Package mutant switches back on, one at a time, the seven bugs of issue 10
// (one owner of service changes), so that the composed-fault simulation can
// show it catches each (the mutation check of issue 11).
//
// It is compiled in only with the build tag lavavisor_mutants, which only
// the tests use (main_test.go builds lavavisor with it when LAVAVISOR_MUTANT
// is set). In every other build On is a constant false and the hooks compile
// away.
package mutant

// The seven bugs, by the name LAVAVISOR_MUTANT takes.
const (
	// RollbackStopsOnJournal: a rollback that cannot write its journal
	// returns before putting the services back (issue 10, point 1).
	RollbackStopsOnJournal = "rollback-stops-on-journal"
	// RestartBlocks: a restart of a service that ended, was removed or was
	// replaced waits forever instead of answering at once (point 2).
	RestartBlocks = "restart-blocks"
	// LinkDecides: a system-path link that cannot be made fails the upgrade
	// after `current` moved, leaving the services behind (point 3).
	LinkDecides = "link-decides"
	// ReloadHoldsLock: a reload waits for a changed service's old process
	// to stop while holding the supervisor's lock (point 4).
	ReloadHoldsLock = "reload-holds-lock"
	// LateSignals: SIGINT/SIGTERM are caught only once the services run
	// (point 5).
	LateSignals = "late-signals"
	// ReloadServicesOnly: a reload applies the services and nothing else
	// (point 6).
	ReloadServicesOnly = "reload-services-only"
	// StopIsFailure: a stop during a download is recorded as a failed
	// upgrade (point 7).
	StopIsFailure = "stop-is-failure"
)

// All lists the mutants in the order of issue 10's points.
var All = []string{RollbackStopsOnJournal, RestartBlocks, LinkDecides, ReloadHoldsLock, LateSignals, ReloadServicesOnly, StopIsFailure}
