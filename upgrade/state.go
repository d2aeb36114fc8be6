package upgrade

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// State is state.json (SPEC §2): what must survive a restart of LavaVisor.
type State struct {
	Chain       *ChainRecord       `json:"chain,omitempty"`
	Journal     *Journal           `json:"journal,omitempty"`
	Bad         map[string]BadMark `json:"bad,omitempty"`
	LastUpgrade *UpgradeRecord     `json:"last_upgrade,omitempty"`
	// OperatorPin is the release `lavavisor upgrade --to` or `rollback`
	// moved to, held until `upgrade --follow` (config pin wins over it).
	OperatorPin string `json:"operator_pin,omitempty"`
	// Held are the services `lavavisor service stop` holds stopped.
	Held []string `json:"held,omitempty"`
	// TargetSeen is when this instance first saw the target it waits for
	// (SPEC §10): its spread delay counts from then, also after a restart.
	TargetSeen *TargetSeen `json:"target_seen,omitempty"`
}

// TargetSeen is a target and when it was first seen.
type TargetSeen struct {
	Target string    `json:"target"`
	At     time.Time `json:"at"`
}

// ChainRecord is the last versions read from the chain, and at what height.
type ChainRecord struct {
	ChainVersions
	Height int64     `json:"height"`
	At     time.Time `json:"at"`
}

// Journal is an upgrade in progress; each step is written before it is taken
// so that a LavaVisor killed mid-upgrade resumes or rolls back (SPEC §6.6).
type Journal struct {
	From    string    `json:"from"`
	To      string    `json:"to"`
	Step    string    `json:"step"`
	Moved   []string  `json:"moved,omitempty"` // services already restarted on To
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
}

// UpgradeRecord is the outcome of the last upgrade, for `status`.
type UpgradeRecord struct {
	From   string    `json:"from"`
	To     string    `json:"to"`
	Result string    `json:"result"`
	At     time.Time `json:"at"`
}

// StateFile holds state.json in memory and writes every change atomically.
// It is safe for concurrent use.
type StateFile struct {
	path  string
	mu    sync.Mutex
	st    State
	dirty bool // st holds changes that could not be written yet
}

// OpenState reads path. A missing file is an empty state. A file that does not
// decode is renamed to <path>.corrupt-<time> and logged, and the state starts
// empty: a bad file must never stop LavaVisor from starting (a crash loop).
func OpenState(path string, log *logrus.Entry) (*StateFile, error) {
	return openState(path, log, false)
}

// OpenStateReadOnly reads the state as OpenState does, but a corrupt file is
// left where it is (read as empty, with a warning): for `lavavisor check`,
// which writes nothing in the home.
func OpenStateReadOnly(path string, log *logrus.Entry) (*StateFile, error) {
	return openState(path, log, true)
}

func openState(path string, log *logrus.Entry, readOnly bool) (*StateFile, error) {
	f := &StateFile{path: path}
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(raw, &f.st); err != nil {
		f.st = State{}
		if readOnly {
			if log != nil {
				log.WithError(err).WithField("file", path).Warn("state file is corrupt; read as empty (the next start moves it aside)")
			}
			return f, nil
		}
		aside := path + ".corrupt-" + time.Now().UTC().Format("20060102T150405.000000000Z")
		if rerr := os.Rename(path, aside); rerr != nil {
			return nil, fmt.Errorf("state %s does not decode (%v) and cannot be moved aside: %w", path, err, rerr)
		}
		if log != nil {
			log.WithError(err).WithField("kept_as", aside).Warn("state file is corrupt; starting with an empty state (bad-release marks and the upgrade journal are lost)")
		}
	}
	return f, nil
}

// Path is the state file's path.
func (f *StateFile) Path() string { return f.path }

// Get returns a copy of the state that the caller may change freely.
func (f *StateFile) Get() State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st.clone()
}

// Update applies fn to the state and writes it. The change holds in memory
// even when the write fails (a full disk must not undo a bad mark or stop a
// rollback): the error is returned, and Flush writes it later.
func (f *StateFile) Update(fn func(*State)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	next := f.st.clone()
	fn(&next)
	f.st = next
	f.dirty = true
	return f.writeLocked()
}

// Flush writes the state if an earlier write failed.
func (f *StateFile) Flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.dirty {
		return nil
	}
	return f.writeLocked()
}

// Dirty reports whether the state holds changes not yet on disk.
func (f *StateFile) Dirty() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dirty
}

func (f *StateFile) writeLocked() error {
	data, err := json.MarshalIndent(f.st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	if err := WriteFileAtomic(f.path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	f.dirty = false
	return nil
}

func (s State) clone() State {
	c := State{Bad: maps.Clone(s.Bad), OperatorPin: s.OperatorPin, Held: slices.Clone(s.Held)}
	if s.Chain != nil {
		ch := *s.Chain
		c.Chain = &ch
	}
	if s.Journal != nil {
		j := *s.Journal
		j.Moved = slices.Clone(j.Moved)
		c.Journal = &j
	}
	if s.LastUpgrade != nil {
		u := *s.LastUpgrade
		c.LastUpgrade = &u
	}
	if s.TargetSeen != nil {
		ts := *s.TargetSeen
		c.TargetSeen = &ts
	}
	return c
}
