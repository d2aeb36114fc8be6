package chaintest

import (
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// votingPeriod is gov v1's PROPOSAL_STATUS_VOTING_PERIOD, the only status
// the node is asked for.
const votingPeriod = 2

// page is the page of proposals that a QueryProposalsRequest asks for, ok
// false when the node has no gov answer. A request the node does not
// expect (another status, a key of no page) fails the test and is answered
// the error. n.mu is held.
func (n *Node) page(req []byte) (page []byte, ok bool, err error) {
	status, key, err := decodeProposalsRequest(req)
	if err != nil {
		return nil, false, n.reject("QueryProposalsRequest %x: %v", req, err)
	}
	if status != votingPeriod {
		return nil, false, n.reject("proposals asked with status %d, want %d (voting period)", status, votingPeriod)
	}
	pages := n.state.Proposals
	if len(pages) == 0 {
		return nil, false, nil
	}
	if len(key) == 0 {
		return pages[0], true, nil
	}
	i, err := strconv.Atoi(strings.TrimPrefix(string(key), "page"))
	if err != nil || !strings.HasPrefix(string(key), "page") || i < 1 || i > len(pages) {
		return nil, false, n.reject("proposals asked with key %q: no such page of %d", key, len(pages))
	}
	return pages[i-1], true, nil
}

// reject fails the test for a request the node does not expect, and is the
// error to answer.
func (n *Node) reject(format string, args ...any) error {
	err := fmt.Errorf("chaintest: "+format, args...)
	n.t.Error(err)
	return err
}

// decodeSpecRequest reads lavanet.lava.spec.QueryGetSpecRequest{string
// ChainID = 1}.
func decodeSpecRequest(b []byte) (chainID string, err error) {
	_, bs, err := fields(b)
	return string(bs[1]), err
}

// decodeProposalsRequest reads cosmos.gov.v1.QueryProposalsRequest's
// proposal_status (1) and pagination (4) key (1).
func decodeProposalsRequest(b []byte) (status uint64, key []byte, err error) {
	vs, bs, err := fields(b)
	if err != nil {
		return 0, nil, err
	}
	_, page, err := fields(bs[4])
	if err != nil {
		return 0, nil, fmt.Errorf("pagination: %w", err)
	}
	return vs[1], page[1], nil
}

// fields reads the varint and length-delimited fields of a protobuf message
// by number, the last of a number winning as in proto3; other fields are
// skipped.
func fields(b []byte) (varints map[protowire.Number]uint64, delimited map[protowire.Number][]byte, err error) {
	varints, delimited = map[protowire.Number]uint64{}, map[protowire.Number][]byte{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, nil, protowire.ParseError(n)
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			varints[num] = v
		case protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			delimited[num] = v
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return nil, nil, fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return varints, delimited, nil
}
