package chain

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// maxVersionsFile bounds the static file: four short lines are expected.
const maxVersionsFile = 64 << 10

// fileSource is the static source, file:///abs/path/versions.yml, re-read on
// every poll so that an operator can change it while LavaVisor runs. It has no
// chain id and no height (0, which turns the poller's height check off).
type fileSource struct {
	path string
}

func newFileSource(node string) (*fileSource, error) {
	u, err := url.Parse(node)
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", node, err)
	}
	if u.Scheme != "file" || (u.Host != "" && u.Host != "localhost") || !filepath.IsAbs(u.Path) {
		return nil, fmt.Errorf("node %q: want file:///absolute/path/versions.yml", node)
	}
	return &fileSource{path: filepath.Clean(u.Path)}, nil
}

func (s *fileSource) String() string { return "file://" + s.path }

func (s *fileSource) Close() error { return nil }

func (s *fileSource) ChainID(context.Context) (string, error) { return "", nil }

func (s *fileSource) BlockTime(context.Context, string) (time.Duration, error) {
	return 0, errors.New("a versions file has no spec")
}

func (s *fileSource) Query(context.Context) (Snapshot, error) {
	v, err := s.read()
	if err != nil {
		return Snapshot{}, fmt.Errorf("versions file %s: %w", s.path, err)
	}
	return Snapshot{Versions: v, Source: s.String(), At: time.Now()}, nil
}

func (s *fileSource) read() (Versions, error) {
	b, err := s.readFile()
	if err != nil {
		return Versions{}, err
	}
	return decodeVersionsFile(b)
}

func (s *fileSource) readFile() ([]byte, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxVersionsFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxVersionsFile {
		return nil, fmt.Errorf("larger than %d bytes", maxVersionsFile)
	}
	return b, nil
}

// Proposals reads the file's `proposals:` list (rehearsals, the demo): each
// with an id, some of the four versions and a voting_end_time.
func (s *fileSource) Proposals(context.Context) ([]Proposal, error) {
	b, err := s.readFile()
	if err != nil {
		return nil, fmt.Errorf("versions file %s: %w", s.path, err)
	}
	ps, err := decodeFileProposals(b)
	if err != nil {
		return nil, fmt.Errorf("versions file %s: proposals: %w", s.path, err)
	}
	return ps, nil
}

// decodeFileProposals is strict: known keys only, an id and a
// voting_end_time each, at least one version, ids unique.
func decodeFileProposals(b []byte) ([]Proposal, error) {
	var raw struct {
		Versions  map[string]yaml.Node `yaml:",inline"` // read by decodeVersionsFile
		Proposals []struct {
			ID             *uint64    `yaml:"id"`
			ProviderTarget *string    `yaml:"provider_target"`
			ProviderMin    *string    `yaml:"provider_min"`
			ConsumerTarget *string    `yaml:"consumer_target"`
			ConsumerMin    *string    `yaml:"consumer_min"`
			VotingEnd      *time.Time `yaml:"voting_end_time"`
		} `yaml:"proposals"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&raw); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(raw.Proposals) > MaxProposals {
		return nil, fmt.Errorf("more than %d", MaxProposals)
	}
	seen := map[uint64]bool{}
	var out []Proposal
	for i, r := range raw.Proposals {
		switch {
		case r.ID == nil:
			return nil, fmt.Errorf("entry %d: id missing", i+1)
		case seen[*r.ID]:
			return nil, fmt.Errorf("entry %d: id %d listed twice", i+1, *r.ID)
		case r.VotingEnd == nil:
			return nil, fmt.Errorf("proposal %d: voting_end_time missing (RFC 3339, e.g. 2026-12-02T10:00:00Z)", *r.ID)
		}
		seen[*r.ID] = true
		c := VersionChange{r.ProviderTarget, r.ProviderMin, r.ConsumerTarget, r.ConsumerMin}
		if c == (VersionChange{}) {
			return nil, fmt.Errorf("proposal %d: no version (%s)", *r.ID, versionsFileKeys)
		}
		out = append(out, Proposal{ID: *r.ID, VotingEnd: r.VotingEnd.UTC(), Form: FormVersionsFile, Changes: []VersionChange{c}})
	}
	return sortProposals(out), nil
}

const versionsFileKeys = "provider_min, provider_target, consumer_min, consumer_target"

var (
	unknownField = regexp.MustCompile(`^(line \d+): field (.+) not found in type `)
	notAMapping  = regexp.MustCompile(`^(line \d+): cannot unmarshal (\S+) .*into struct`)
)

// decodeVersionsFile is strict: the four keys, nothing else, one document.
func decodeVersionsFile(b []byte) (Versions, error) {
	var raw struct {
		ProviderMin    *string `yaml:"provider_min"`
		ProviderTarget *string `yaml:"provider_target"`
		ConsumerMin    *string `yaml:"consumer_min"`
		ConsumerTarget *string `yaml:"consumer_target"`
		// Read by Proposals: a bad list must not fail the version poll.
		Proposals yaml.Node `yaml:"proposals"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return Versions{}, errors.New("empty: want " + versionsFileKeys)
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			// yaml.v3 names the Go struct of an unknown field: say the key.
			var probs []string
			for _, e := range te.Errors {
				if m := unknownField.FindStringSubmatch(e); m != nil {
					e = fmt.Sprintf("%s: unknown key %s (want %s)", m[1], m[2], versionsFileKeys)
				} else if m := notAMapping.FindStringSubmatch(e); m != nil {
					e = fmt.Sprintf("%s: want a mapping of %s, got %s", m[1], versionsFileKeys, m[2])
				}
				probs = append(probs, e)
			}
			return Versions{}, errors.New(strings.Join(probs, "; "))
		}
		return Versions{}, err
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Versions{}, errors.New("more than one YAML document")
	}
	m := map[string]string{}
	var missing []error
	for _, f := range []struct {
		key string
		p   *string
	}{
		{"provider_min", raw.ProviderMin}, {"provider_target", raw.ProviderTarget},
		{"consumer_min", raw.ConsumerMin}, {"consumer_target", raw.ConsumerTarget},
	} {
		if f.p == nil {
			missing = append(missing, fmt.Errorf("%s missing", f.key))
			continue
		}
		m[f.key] = *f.p
	}
	if err := errors.Join(missing...); err != nil {
		return Versions{}, err
	}
	return parseVersions(m)
}
