package chain

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// Version proposals (SPEC §8). The few fields LavaVisor reads from the gov
// module's answers are decoded by hand, as proto.go decodes the protocol
// params: importing the SDK's x/gov and x/params types would cost about 3 MB
// of binary and 3 MiB of memory for five fields, and their registry would
// refuse the whole answer over one message type it does not know
// (/lavanet.lava.protocol.MsgSetVersion is not registered in it). Unlike the
// params decoder, this one is lenient about what it does not use: fields it
// does not read are skipped whatever their order, as any protobuf decoder
// does, because a proposal carries much that LavaVisor ignores. Layouts
// (cosmos-sdk v0.53 proto/cosmos/gov/v1/{gov,query,tx}.proto,
// cosmos/params/v1beta1/params.proto, lavanet/lava/protocol/tx.proto):
//
//	QueryProposalsRequest{proposal_status = 1 (enum); pagination = 4 PageRequest{key = 1}}
//	QueryProposalsResponse{repeated Proposal proposals = 1; PageResponse pagination = 2 {next_key = 1}}
//	Proposal{id = 1 (uint64); repeated Any messages = 2; status = 3; voting_end_time = 9 Timestamp}
//	Any{type_url = 1; value = 2}  Timestamp{seconds = 1; nanos = 2}
//	MsgExecLegacyContent{Any content = 1; authority = 2}
//	ParameterChangeProposal{title = 1; description = 2; repeated ParamChange changes = 3}
//	ParamChange{subspace = 1; key = 2; value = 3 (JSON text)}
//	MsgSetVersion{authority = 1; Version version = 2}

const (
	proposalsMethod = "/cosmos.gov.v1.Query/Proposals"

	// StatusVotingPeriod is gov v1's PROPOSAL_STATUS_VOTING_PERIOD.
	statusVotingPeriod = 2

	typeMsgSetVersion    = "/lavanet.lava.protocol.MsgSetVersion"
	typeExecLegacy       = "/cosmos.gov.v1.MsgExecLegacyContent"
	typeParameterChange  = "/cosmos.params.v1beta1.ParameterChangeProposal"
	protocolSubspace     = "protocol"
	protocolVersionParam = "Version"

	// maxProposalPages bounds the pagination a node can lead LavaVisor through.
	maxProposalPages = 20
	// MaxProposals bounds how many version proposals one read keeps.
	MaxProposals = 100
)

// Forms of a version proposal (SPEC §8).
const (
	FormSetVersion   = "MsgSetVersion"
	FormParamChange  = "ParameterChangeProposal"
	FormVersionsFile = "versions file"
)

// Proposal is a governance proposal in voting period that changes the
// protocol versions, as read: its fields not yet applied (see Versions).
type Proposal struct {
	ID        uint64
	VotingEnd time.Time
	Form      string
	// Changes are the version changes it carries, in the order the chain
	// would apply them; each sets some of the four fields.
	Changes []VersionChange
}

// VersionChange sets the fields it has (nil: left as they are), unvalidated.
type VersionChange struct {
	ProviderTarget, ProviderMin, ConsumerTarget, ConsumerMin *string
}

// Versions are the chain's versions if the proposal passed: its changes
// applied over current, as the chain applies them, then validated (§6.1).
func (p Proposal) Versions(current Versions) (Versions, error) {
	raw := map[string]string{
		"provider_min": current.ProviderMin.String(), "provider_target": current.ProviderTarget.String(),
		"consumer_min": current.ConsumerMin.String(), "consumer_target": current.ConsumerTarget.String(),
	}
	for _, c := range p.Changes {
		for key, s := range map[string]*string{
			"provider_min": c.ProviderMin, "provider_target": c.ProviderTarget,
			"consumer_min": c.ConsumerMin, "consumer_target": c.ConsumerTarget,
		} {
			if s != nil {
				raw[key] = *s
			}
		}
	}
	v, err := parseVersions(raw)
	if err != nil {
		return Versions{}, fmt.Errorf("proposal %d: %w", p.ID, err)
	}
	return v, nil
}

// ProposalSource is a Source that can also list the version proposals in
// voting period. Every Source of this package is one.
type ProposalSource interface {
	Proposals(ctx context.Context) ([]Proposal, error)
}

// sortProposals orders by voting end, then id: the order they may apply in.
func sortProposals(ps []Proposal) []Proposal {
	sort.SliceStable(ps, func(i, j int) bool {
		if !ps[i].VotingEnd.Equal(ps[j].VotingEnd) {
			return ps[i].VotingEnd.Before(ps[j].VotingEnd)
		}
		return ps[i].ID < ps[j].ID
	})
	if len(ps) > MaxProposals {
		ps = ps[:MaxProposals]
	}
	return ps
}

// QueryProposalsRequest is cosmos.gov.v1.QueryProposalsRequest with the
// proposal status and the page key.
type QueryProposalsRequest struct {
	Status int32
	Key    []byte
}

func (m *QueryProposalsRequest) Reset()      { *m = QueryProposalsRequest{} }
func (*QueryProposalsRequest) ProtoMessage() {}
func (m *QueryProposalsRequest) String() string {
	return fmt.Sprintf("QueryProposalsRequest{proposal_status:%d}", m.Status)
}
func (m *QueryProposalsRequest) Size() int { b, _ := m.Marshal(); return len(b) }
func (m *QueryProposalsRequest) Marshal() ([]byte, error) {
	b := []byte{}
	if m.Status != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(m.Status))
	}
	if len(m.Key) > 0 {
		page := protowire.AppendTag(nil, 1, protowire.BytesType)
		page = protowire.AppendBytes(page, m.Key)
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendBytes(b, page)
	}
	return b, nil
}

// Unmarshal is lenient (it serves the fake nodes of tests).
func (m *QueryProposalsRequest) Unmarshal(b []byte) error {
	*m = QueryProposalsRequest{}
	return walkFields(b, func(num protowire.Number, typ protowire.Type, v, raw []byte) error {
		switch {
		case num == 1 && typ == protowire.VarintType:
			x, _ := protowire.ConsumeVarint(raw[protowire.SizeTag(num):])
			m.Status = int32(x)
		case num == 4 && typ == protowire.BytesType:
			return walkFields(v, func(num protowire.Number, typ protowire.Type, v, _ []byte) error {
				if num == 1 && typ == protowire.BytesType {
					m.Key = append([]byte(nil), v...)
				}
				return nil
			})
		}
		return nil
	})
}

// QueryProposalsResponse is cosmos.gov.v1.QueryProposalsResponse: the version
// proposals found in it (others are dropped while decoding) and the next
// page's key.
type QueryProposalsResponse struct {
	Proposals []Proposal
	NextKey   []byte
	raw       []byte
}

func (m *QueryProposalsResponse) Reset()      { *m = QueryProposalsResponse{} }
func (*QueryProposalsResponse) ProtoMessage() {}
func (m *QueryProposalsResponse) String() string {
	return fmt.Sprintf("QueryProposalsResponse{%d version proposals}", len(m.Proposals))
}

// Marshal writes back the bytes decoded (tests' fake nodes send raw bytes).
func (m *QueryProposalsResponse) Marshal() ([]byte, error) { return m.raw, nil }
func (m *QueryProposalsResponse) Size() int                { return len(m.raw) }

func (m *QueryProposalsResponse) Unmarshal(b []byte) error {
	*m = QueryProposalsResponse{}
	err := walkFields(b, func(num protowire.Number, typ protowire.Type, v, _ []byte) error {
		switch num {
		case 1:
			if typ != protowire.BytesType {
				return fmt.Errorf("proposals: wire type %d", typ)
			}
			p, ok, err := decodeProposal(v)
			if err != nil {
				return err
			}
			if ok && len(m.Proposals) < MaxProposals {
				m.Proposals = append(m.Proposals, p)
			}
		case 2:
			if typ != protowire.BytesType {
				return fmt.Errorf("pagination: wire type %d", typ)
			}
			return walkFields(v, func(num protowire.Number, typ protowire.Type, v, _ []byte) error {
				if num == 1 && typ == protowire.BytesType {
					m.NextKey = append([]byte(nil), v...)
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		*m = QueryProposalsResponse{}
		return fmt.Errorf("decode QueryProposalsResponse: %w", err)
	}
	m.raw = append([]byte(nil), b...)
	return nil
}

// decodeProposal reads one Proposal; ok is false when it is not in voting
// period or carries no version change.
func decodeProposal(b []byte) (p Proposal, ok bool, err error) {
	status := int32(-1)
	var endSet bool
	err = walkFields(b, func(num protowire.Number, typ protowire.Type, v, raw []byte) error {
		switch num {
		case 1, 3:
			if typ != protowire.VarintType {
				return fmt.Errorf("proposal field %d: wire type %d, want varint", num, typ)
			}
			x, _ := protowire.ConsumeVarint(raw[protowire.SizeTag(num):])
			if num == 1 {
				p.ID = x
			} else {
				status = int32(x)
			}
		case 2:
			if typ != protowire.BytesType {
				return fmt.Errorf("proposal messages: wire type %d", typ)
			}
			typeURL, value, err := decodeAny(v)
			if err != nil {
				return fmt.Errorf("proposal message: %w", err)
			}
			form, changes, err := versionChanges(typeURL, value)
			if err != nil {
				return fmt.Errorf("%s: %w", typeURL, err)
			}
			if len(changes) > 0 {
				if p.Form == "" {
					p.Form = form
				}
				p.Changes = append(p.Changes, changes...)
			}
		case 9:
			if typ != protowire.BytesType {
				return fmt.Errorf("voting_end_time: wire type %d", typ)
			}
			t, err := decodeTimestamp(v)
			if err != nil {
				return fmt.Errorf("voting_end_time: %w", err)
			}
			p.VotingEnd, endSet = t, true
		}
		return nil
	})
	if err != nil {
		return Proposal{}, false, fmt.Errorf("proposal %d: %w", p.ID, err)
	}
	if status != statusVotingPeriod || len(p.Changes) == 0 {
		return Proposal{}, false, nil
	}
	if !endSet {
		return Proposal{}, false, fmt.Errorf("proposal %d: no voting_end_time", p.ID)
	}
	return p, true, nil
}

// versionChanges recognises exactly the two forms of SPEC §8; anything else
// carries no change (nil, nil).
func versionChanges(typeURL string, value []byte) (string, []VersionChange, error) {
	switch typeURL {
	case typeMsgSetVersion:
		var c *VersionChange
		err := walkFields(value, func(num protowire.Number, typ protowire.Type, v, _ []byte) error {
			if num != 2 {
				return nil
			}
			if typ != protowire.BytesType {
				return fmt.Errorf("version: wire type %d", typ)
			}
			var pv ProtocolVersion
			if err := pv.Unmarshal(v); err != nil {
				return fmt.Errorf("version: %w", err)
			}
			// A MsgSetVersion sets the whole Version: an empty field is empty.
			c = &VersionChange{&pv.ProviderTarget, &pv.ProviderMin, &pv.ConsumerTarget, &pv.ConsumerMin}
			return nil
		})
		if err != nil || c == nil {
			return "", nil, err
		}
		return FormSetVersion, []VersionChange{*c}, nil
	case typeExecLegacy:
		var changes []VersionChange
		err := walkFields(value, func(num protowire.Number, typ protowire.Type, v, _ []byte) error {
			if num != 1 || typ != protowire.BytesType {
				return nil
			}
			inner, content, err := decodeAny(v)
			if err != nil {
				return fmt.Errorf("content: %w", err)
			}
			if inner != typeParameterChange {
				return nil
			}
			changes, err = paramChanges(content)
			return err
		})
		if err != nil || len(changes) == 0 {
			return "", nil, err
		}
		return FormParamChange, changes, nil
	}
	return "", nil, nil
}

// paramChanges reads the protocol/Version changes of a ParameterChangeProposal.
func paramChanges(b []byte) ([]VersionChange, error) {
	var out []VersionChange
	err := walkFields(b, func(num protowire.Number, typ protowire.Type, v, _ []byte) error {
		if num != 3 || typ != protowire.BytesType {
			return nil
		}
		var f [3]string
		err := walkFields(v, func(num protowire.Number, typ protowire.Type, v, _ []byte) error {
			if num >= 1 && num <= 3 && typ == protowire.BytesType {
				f[num-1] = string(v)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("changes: %w", err)
		}
		if f[0] != protocolSubspace || f[1] != protocolVersionParam {
			return nil
		}
		c, err := legacyValue([]byte(f[2]))
		if err != nil {
			return fmt.Errorf("protocol Version value: %w", err)
		}
		out = append(out, c)
		return nil
	})
	return out, err
}

// legacyValue reads the JSON value of a protocol/Version param change: some
// of the four fields, as the chain unmarshals it over its current value.
func legacyValue(b []byte) (VersionChange, error) {
	var raw struct {
		ProviderTarget *string `json:"provider_target"`
		ProviderMin    *string `json:"provider_min"`
		ConsumerTarget *string `json:"consumer_target"`
		ConsumerMin    *string `json:"consumer_min"`
	}
	if !utf8.Valid(b) {
		return VersionChange{}, errors.New("invalid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return VersionChange{}, fmt.Errorf("not the JSON of a Version: %s", truncate(err.Error()))
	}
	c := VersionChange{raw.ProviderTarget, raw.ProviderMin, raw.ConsumerTarget, raw.ConsumerMin}
	if c == (VersionChange{}) {
		return VersionChange{}, errors.New("no version field in the value")
	}
	return c, nil
}

func decodeAny(b []byte) (typeURL string, value []byte, err error) {
	err = walkFields(b, func(num protowire.Number, typ protowire.Type, v, _ []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case 1:
			typeURL = string(v)
		case 2:
			value = v
		}
		return nil
	})
	return typeURL, value, err
}

func decodeTimestamp(b []byte) (time.Time, error) {
	var secs, nanos int64
	err := walkFields(b, func(num protowire.Number, typ protowire.Type, _, raw []byte) error {
		if (num == 1 || num == 2) && typ == protowire.VarintType {
			x, _ := protowire.ConsumeVarint(raw[protowire.SizeTag(num):])
			if num == 1 {
				secs = int64(x)
			} else {
				nanos = int64(int32(x))
			}
		}
		return nil
	})
	if err != nil {
		return time.Time{}, err
	}
	// Timestamp's own range: years 1 to 9999.
	if secs < -62135596800 || secs > 253402300799 || nanos < 0 || nanos > 999999999 {
		return time.Time{}, fmt.Errorf("out of range (%d s, %d ns)", secs, nanos)
	}
	return time.Unix(secs, nanos).UTC(), nil
}

// String is a change for logs: "provider_target=6.3.0 ...".
func (c VersionChange) String() string {
	var parts []string
	for _, f := range []struct {
		k string
		v *string
	}{{"provider_target", c.ProviderTarget}, {"provider_min", c.ProviderMin}, {"consumer_target", c.ConsumerTarget}, {"consumer_min", c.ConsumerMin}} {
		if f.v != nil {
			parts = append(parts, f.k+"="+truncate(*f.v))
		}
	}
	return strings.Join(parts, " ")
}
