package chain

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// Builders of gov messages, for the shapes the recordings do not have
// (hostile versions, a partial legacy value, other messages, pages).

func field(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func varintField(b []byte, num protowire.Number, x uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, x)
}

func anyMsg(typeURL string, value []byte) []byte {
	return field(field(nil, 1, []byte(typeURL)), 2, value)
}

func setVersionMsg(pt, pm, ct, cm string) []byte {
	v, _ := (&ProtocolVersion{ProviderTarget: pt, ProviderMin: pm, ConsumerTarget: ct, ConsumerMin: cm}).Marshal()
	return anyMsg(typeMsgSetVersion, field(field(nil, 1, []byte("lava@gov")), 2, v))
}

func legacyMsg(subspace, key, value string) []byte {
	change := field(field(field(nil, 1, []byte(subspace)), 2, []byte(key)), 3, []byte(value))
	content := field(field(field(nil, 1, []byte("title")), 2, []byte("description")), 3, change)
	exec := field(field(nil, 1, anyMsg(typeParameterChange, content)), 2, []byte("lava@gov"))
	return anyMsg(typeExecLegacy, exec)
}

func proposalMsg(id uint64, status uint64, end time.Time, msgs ...[]byte) []byte {
	b := varintField(nil, 1, id)
	for _, m := range msgs {
		b = field(b, 2, m)
	}
	b = varintField(b, 3, status)
	ts := varintField(varintField(nil, 1, uint64(end.Unix())), 2, uint64(end.Nanosecond()))
	b = field(b, 9, ts)
	return field(b, 99, []byte("a field of a later SDK")) // tolerated
}

func proposalsPage(next string, proposals ...[]byte) []byte {
	var b []byte
	for _, p := range proposals {
		b = field(b, 1, p)
	}
	page := []byte{}
	if next != "" {
		page = field(nil, 1, []byte(next))
	}
	return field(b, 2, page)
}

func decodeProposals(t *testing.T, value []byte) []Proposal {
	t.Helper()
	var res QueryProposalsResponse
	if err := res.Unmarshal(value); err != nil {
		t.Fatal(err)
	}
	return res.Proposals
}

func mustVersions(t *testing.T, pt, pm, ct, cm string) Versions {
	t.Helper()
	v, err := parseVersions(map[string]string{"provider_target": pt, "provider_min": pm, "consumer_target": ct, "consumer_min": cm})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestDecodeRecordedProposals(t *testing.T) {
	current := mustVersions(t, "6.2.5", "5.5.1", "6.2.5", "5.5.1")
	for _, tc := range []struct {
		file, form, end, want string
		id                    uint64
	}{
		{"abci_query_gov_v1_proposals_voting_legacy.json", FormParamChange, "2026-12-02T02:36:48.990460553Z", "provider 5.5.1..6.3.0, consumer 5.5.1..6.3.0", 11},
		{"abci_query_gov_v1_proposals_voting_msgset.json", FormSetVersion, "2026-12-02T02:36:57.127705319Z", "provider 6.2.5..6.3.1, consumer 6.2.5..6.3.1", 12},
		{"abci_query_gov_v1_proposals_voting_msgsetpass.json", FormSetVersion, "", "provider 5.5.1..6.2.9, consumer 5.5.1..6.2.9", 13},
		{"abci_query_gov_v1_proposals_voting_voted_msgsetpass.json", FormSetVersion, "", "provider 5.5.1..6.2.9, consumer 5.5.1..6.2.9", 13},
		{"abci_query_gov_v1_proposals_voting_restore.json", FormParamChange, "", "provider 5.5.1..6.2.5, consumer 5.5.1..6.2.5", 14},
		{"abci_query_gov_v1_proposals_voting_voted_restore.json", FormParamChange, "", "provider 5.5.1..6.2.5, consumer 5.5.1..6.2.5", 14},
	} {
		t.Run(tc.file, func(t *testing.T) {
			ps := decodeProposals(t, recordedValue(t, filepath.Join("gov", tc.file)))
			if len(ps) != 1 {
				t.Fatalf("got %d proposals, want 1", len(ps))
			}
			p := ps[0]
			if p.ID != tc.id || p.Form != tc.form {
				t.Errorf("got id %d form %q, want %d %q", p.ID, p.Form, tc.id, tc.form)
			}
			if tc.end != "" && p.VotingEnd.Format(time.RFC3339Nano) != tc.end {
				t.Errorf("voting end %s, want %s", p.VotingEnd.Format(time.RFC3339Nano), tc.end)
			}
			v, err := p.Versions(current)
			if err != nil {
				t.Fatal(err)
			}
			if v.String() != tc.want {
				t.Errorf("versions %s, want %s", v, tc.want)
			}
		})
	}
}

// After the voting period (passed or rejected) a proposal carries no change
// to come: the single-proposal answers recorded then decode as a list of one
// (same field 1), and are dropped; so are the empty lists.
func TestProposalsAfterVotingAreDropped(t *testing.T) {
	for _, f := range []string{
		"abci_query_gov_v1_proposal_11_after_legacy.json", "abci_query_gov_v1_proposal_12_after_msgset.json",
		"abci_query_gov_v1_proposal_13_passed_msgsetpass.json", "abci_query_gov_v1_proposal_14_passed_restore.json",
		"abci_query_gov_v1_proposals_voting_empty_after_legacy.json", "abci_query_gov_v1_proposals_voting_empty_after_msgset.json",
	} {
		if ps := decodeProposals(t, recordedValue(t, filepath.Join("gov", f))); len(ps) != 0 {
			t.Errorf("%s: got %+v, want none", f, ps)
		}
	}
}

func TestProposalVersionsHostileAndPartial(t *testing.T) {
	current := mustVersions(t, "6.2.5", "5.5.1", "6.2.5", "5.5.1")
	end := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, want, err string
		msgs            [][]byte
	}{
		{name: "partial legacy value over the current versions", msgs: [][]byte{legacyMsg("protocol", "Version", `{"provider_target":"6.3.0"}`)},
			want: "provider 5.5.1..6.3.0, consumer 5.5.1..6.2.5"},
		{name: "two changes applied in order", msgs: [][]byte{legacyMsg("protocol", "Version", `{"provider_target":"6.3.0","provider_min":"6.0.0"}`), setVersionMsg("6.4.0", "6.1.0", "6.4.0", "6.1.0")},
			want: "provider 6.1.0..6.4.0, consumer 6.1.0..6.4.0"},
		{name: "path in a version", msgs: [][]byte{setVersionMsg("../../etc", "5.5.1", "6.3.0", "5.5.1")}, err: `provider_target: invalid version "../../etc"`},
		{name: "leading zero", msgs: [][]byte{legacyMsg("protocol", "Version", `{"consumer_target":"06.3.0"}`)}, err: "leading zero"},
		{name: "min above target after the merge", msgs: [][]byte{legacyMsg("protocol", "Version", `{"provider_min":"7.0.0"}`)}, err: "provider_min 7.0.0 above provider_target 6.2.5"},
		{name: "empty field of a MsgSetVersion", msgs: [][]byte{setVersionMsg("6.3.0", "", "6.3.0", "5.5.1")}, err: "provider_min"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := decodeProposals(t, proposalsPage("", proposalMsg(7, statusVotingPeriod, end, tc.msgs...)))
			if len(ps) != 1 {
				t.Fatalf("got %d proposals", len(ps))
			}
			v, err := ps[0].Versions(current)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "proposal 7") {
					t.Fatalf("got %v, %v; want an error with %q", v, err, tc.err)
				}
				return
			}
			if err != nil || v.String() != tc.want {
				t.Fatalf("got %v, %v; want %s", v, err, tc.want)
			}
		})
	}
}

// Only the two forms of SPEC §8 count; everything else is ignored, and a
// value that is not a Version's JSON fails the read with a reason.
func TestProposalFormsRecognised(t *testing.T) {
	end := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	ignored := [][]byte{
		anyMsg("/cosmos.bank.v1beta1.MsgSend", []byte{0x0a, 0x01, 'x'}),
		legacyMsg("staking", "Version", `{"provider_target":"9.9.9"}`),
		legacyMsg("protocol", "OtherParam", `"x"`),
		anyMsg(typeExecLegacy, field(nil, 1, anyMsg("/cosmos.upgrade.v1beta1.SoftwareUpgradeProposal", nil))),
	}
	var props [][]byte
	for i, m := range ignored {
		props = append(props, proposalMsg(uint64(20+i), statusVotingPeriod, end, m))
	}
	props = append(props, proposalMsg(30, 3 /* passed */, end, setVersionMsg("6.3.0", "5.5.1", "6.3.0", "5.5.1")))
	if ps := decodeProposals(t, proposalsPage("", props...)); len(ps) != 0 {
		t.Fatalf("got %+v, want none", ps)
	}
	for _, bad := range []string{`"6.3.0"`, `{"provider_target":"6.3.0","extra":1}`, `{}`, `{"provider_target":6}`} {
		var res QueryProposalsResponse
		err := res.Unmarshal(proposalsPage("", proposalMsg(40, statusVotingPeriod, end, legacyMsg("protocol", "Version", bad))))
		if err == nil || !strings.Contains(err.Error(), "proposal 40") {
			t.Errorf("value %s: got %v, want an error naming proposal 40", bad, err)
		}
	}
}

func TestFileProposals(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "versions.yml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	src, err := NewSource(Options{Nodes: "file://" + path})
	if err != nil {
		t.Fatal(err)
	}
	base := "provider_min: 6.2.5\nprovider_target: 6.2.5\nconsumer_min: 6.2.5\nconsumer_target: 6.2.5\n"
	write(base + "proposals:\n  - id: 2\n    provider_target: 6.3.0\n    voting_end_time: 2026-12-02T10:00:00Z\n" +
		"  - id: 1\n    provider_target: 6.4.0\n    provider_min: 6.3.0\n    consumer_target: 6.4.0\n    consumer_min: 6.3.0\n    voting_end_time: 2026-12-02T09:00:00Z\n")
	ps, err := src.(ProposalSource).Proposals(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[0].ID != 1 || ps[1].ID != 2 {
		t.Fatalf("got %+v, want ids 1 then 2 (earliest voting end first)", ps)
	}
	snap, err := src.Query(context.Background())
	if err != nil || snap.Versions.ProviderTarget.String() != "6.2.5" {
		t.Fatalf("versions with a proposals list: %v %v", snap.Versions, err)
	}
	v, err := ps[1].Versions(snap.Versions)
	if err != nil || v.String() != "provider 6.2.5..6.3.0, consumer 6.2.5..6.2.5" {
		t.Fatalf("partial file proposal: %v %v", v, err)
	}
	// A bad list fails the proposals read only, never the versions.
	for _, tc := range []struct{ body, err string }{
		{"proposals:\n  - id: 1\n    provider_target: 6.3.0\n", "voting_end_time missing"},
		{"proposals:\n  - provider_target: 6.3.0\n    voting_end_time: 2026-12-02T10:00:00Z\n", "id missing"},
		{"proposals:\n  - id: 1\n    voting_end_time: 2026-12-02T10:00:00Z\n", "no version"},
		{"proposals:\n  - id: 1\n    provider_targte: 6.3.0\n    voting_end_time: 2026-12-02T10:00:00Z\n", "provider_targte"},
		{"proposals:\n  - id: 1\n    provider_target: 6.3.0\n    voting_end_time: 2026-12-02T10:00:00Z\n  - id: 1\n    provider_target: 6.3.0\n    voting_end_time: 2026-12-02T10:00:00Z\n", "listed twice"},
		{"proposals: 3\n", "line"},
	} {
		write(base + tc.body)
		if _, err := src.(ProposalSource).Proposals(context.Background()); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%q: got %v, want %q", tc.body, err, tc.err)
		}
		if _, err := src.Query(context.Background()); err != nil {
			t.Errorf("%q: the versions must still be read: %v", tc.body, err)
		}
	}
}

func TestRPCProposals(t *testing.T) {
	n := newFakeNode(t)
	src := newTestSource(t, Options{Nodes: n.TCP()})
	n.setProposals(recordedValue(t, "gov/abci_query_gov_v1_proposals_voting_legacy.json"))
	ps, err := src.(ProposalSource).Proposals(context.Background())
	if err != nil || len(ps) != 1 || ps[0].ID != 11 || ps[0].Form != FormParamChange {
		t.Fatalf("legacy over RPC: %+v %v", ps, err)
	}
	n.setProposals(recordedValue(t, "gov/abci_query_gov_v1_proposals_voting_msgset.json"))
	ps, err = src.(ProposalSource).Proposals(context.Background())
	if err != nil || len(ps) != 1 || ps[0].ID != 12 || ps[0].Form != FormSetVersion {
		t.Fatalf("MsgSetVersion over RPC: %+v %v", ps, err)
	}
	// Pages: the key of each is sent back; proposals of every page kept.
	end := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	n.setProposals(
		proposalsPage("page2", proposalMsg(3, statusVotingPeriod, end.Add(time.Hour), setVersionMsg("6.4.0", "5.5.1", "6.4.0", "5.5.1"))),
		proposalsPage("", proposalMsg(4, statusVotingPeriod, end, setVersionMsg("6.3.0", "5.5.1", "6.3.0", "5.5.1"))),
	)
	ps, err = src.(ProposalSource).Proposals(context.Background())
	if err != nil || len(ps) != 2 || ps[0].ID != 4 || ps[1].ID != 3 {
		t.Fatalf("two pages: %+v %v", ps, err)
	}
	// A node without the gov module, or with garbage, fails the read only.
	n.setProposals([]byte{0xff, 0xff})
	if _, err := src.(ProposalSource).Proposals(context.Background()); err == nil {
		t.Fatal("garbage decoded")
	}
	if _, err := src.Query(context.Background()); err != nil {
		t.Fatalf("versions: %v", err)
	}
}

func TestGRPCProposals(t *testing.T) {
	f, _ := newFakeGRPC(t, false)
	src := newTestSource(t, Options{GRPCAddr: f.addr, GRPCInsecure: true})
	for _, tc := range []struct {
		file string
		id   uint64
		form string
	}{
		{"gov/abci_query_gov_v1_proposals_voting_legacy.json", 11, FormParamChange},
		{"gov/abci_query_gov_v1_proposals_voting_msgset.json", 12, FormSetVersion},
		{"gov/abci_query_gov_v1_proposals_voting_empty_after_msgset.json", 0, ""},
	} {
		f.setProposals(recordedValue(t, tc.file))
		ps, err := src.(ProposalSource).Proposals(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if tc.id == 0 {
			if len(ps) != 0 {
				t.Errorf("%s: got %+v", tc.file, ps)
			}
			continue
		}
		if len(ps) != 1 || ps[0].ID != tc.id || ps[0].Form != tc.form {
			t.Errorf("%s: got %+v", tc.file, ps)
		}
	}
}
