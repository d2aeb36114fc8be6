package chain

import (
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// Lava's own Go module cannot be imported (it pins Cosmos SDK 0.47 through a fork
// replace), so the messages LavaVisor reads are written here by hand, to the layout
// of proto/lavanet/lava/protocol/params.proto and query.proto (see
// testdata/protocol_params_protobuf_layout.md):
//
//	message Version { string provider_target = 1; string provider_min = 2;
//	                  string consumer_target = 3; string consumer_min = 4; }
//	message Params { Version version = 1 [(gogoproto.nullable) = false]; }
//	message QueryParamsResponse { Params params = 1 [(gogoproto.nullable) = false]; }
//
// They implement what the Cosmos SDK codec needs from a gogoproto message
// (Reset, String, ProtoMessage, Marshal, Unmarshal, Size).
//
// The decoder is strict on purpose: it accepts exactly the bytes that the encoder
// (ours, and gogoproto's on the node) produces: known fields once each, in field
// order, minimal varints, no explicitly encoded empty strings, valid UTF-8. Fields
// it does not know (a later Lava may add some) are kept verbatim and written back
// after the known ones, which is where a canonical encoder puts them, because
// their numbers are higher. So every accepted message re-encodes to exactly its
// input bytes (FuzzDecodeParams checks this).

const (
	paramsMethod = "/lavanet.lava.protocol.Query/Params"
	specMethod   = "/lavanet.lava.spec.Query/Spec"
)

// QueryParamsRequest is lavanet.lava.protocol.QueryParamsRequest (no fields).
type QueryParamsRequest struct{}

func (m *QueryParamsRequest) Reset()                   { *m = QueryParamsRequest{} }
func (m *QueryParamsRequest) String() string           { return "QueryParamsRequest{}" }
func (*QueryParamsRequest) ProtoMessage()              {}
func (m *QueryParamsRequest) Size() int                { return 0 }
func (m *QueryParamsRequest) Marshal() ([]byte, error) { return []byte{}, nil }

// Unmarshal skips any field: the node side of the request is only used in tests.
func (m *QueryParamsRequest) Unmarshal(b []byte) error {
	return walkFields(b, func(protowire.Number, protowire.Type, []byte, []byte) error { return nil })
}

// QueryParamsResponse is lavanet.lava.protocol.QueryParamsResponse.
type QueryParamsResponse struct {
	Params  Params
	unknown []byte
}

// Params is lavanet.lava.protocol.Params.
type Params struct {
	Version ProtocolVersion
	unknown []byte
}

// ProtocolVersion is lavanet.lava.protocol.Version: the four version strings as
// the chain stores them, not yet validated (see Versions).
type ProtocolVersion struct {
	ProviderTarget string
	ProviderMin    string
	ConsumerTarget string
	ConsumerMin    string
	unknown        []byte
}

func (m *QueryParamsResponse) Reset()      { *m = QueryParamsResponse{} }
func (*QueryParamsResponse) ProtoMessage() {}
func (m *QueryParamsResponse) String() string {
	return fmt.Sprintf("QueryParamsResponse{Params:%s}", m.Params.String())
}

func (m *Params) Reset()      { *m = Params{} }
func (*Params) ProtoMessage() {}
func (m *Params) String() string {
	return fmt.Sprintf("Params{Version:%s}", m.Version.String())
}

func (m *ProtocolVersion) Reset()      { *m = ProtocolVersion{} }
func (*ProtocolVersion) ProtoMessage() {}
func (m *ProtocolVersion) String() string {
	return fmt.Sprintf("Version{provider_target:%q provider_min:%q consumer_target:%q consumer_min:%q}",
		truncate(m.ProviderTarget), truncate(m.ProviderMin), truncate(m.ConsumerTarget), truncate(m.ConsumerMin))
}

// Marshal writes what gogoproto writes: the non-nullable Params always, even empty.
func (m *QueryParamsResponse) Marshal() ([]byte, error) { return m.appendTo(nil), nil }
func (m *QueryParamsResponse) Size() int                { return len(m.appendTo(nil)) }
func (m *QueryParamsResponse) appendTo(b []byte) []byte {
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, m.Params.appendTo(nil))
	return append(b, m.unknown...)
}

func (m *Params) Marshal() ([]byte, error) { return m.appendTo(nil), nil }
func (m *Params) Size() int                { return len(m.appendTo(nil)) }
func (m *Params) appendTo(b []byte) []byte {
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendBytes(b, m.Version.appendTo(nil))
	return append(b, m.unknown...)
}

func (m *ProtocolVersion) Marshal() ([]byte, error) { return m.appendTo(nil), nil }
func (m *ProtocolVersion) Size() int                { return len(m.appendTo(nil)) }
func (m *ProtocolVersion) appendTo(b []byte) []byte {
	for i, s := range m.fields() {
		if *s == "" { // proto3 leaves empty strings out
			continue
		}
		b = protowire.AppendTag(b, protowire.Number(i+1), protowire.BytesType)
		b = protowire.AppendString(b, *s)
	}
	return append(b, m.unknown...)
}

func (m *ProtocolVersion) fields() [4]*string {
	return [4]*string{&m.ProviderTarget, &m.ProviderMin, &m.ConsumerTarget, &m.ConsumerMin}
}

// Unmarshal decodes a QueryParamsResponse strictly (see the comment at the top).
func (m *QueryParamsResponse) Unmarshal(b []byte) error {
	*m = QueryParamsResponse{}
	unknown, err := unmarshalWrapper(b, "params", m.Params.Unmarshal)
	if err != nil {
		*m = QueryParamsResponse{} // nothing half-decoded is left behind
		return fmt.Errorf("decode QueryParamsResponse: %w", err)
	}
	m.unknown = unknown
	return nil
}

// Unmarshal decodes a Params strictly.
func (m *Params) Unmarshal(b []byte) error {
	*m = Params{}
	unknown, err := unmarshalWrapper(b, "version", m.Version.Unmarshal)
	if err != nil {
		*m = Params{}
		return err
	}
	m.unknown = unknown
	return nil
}

// unmarshalWrapper decodes a message whose one modelled field is the
// required message field 1 (named name), decoded by inner; other fields are
// kept verbatim and returned.
func unmarshalWrapper(b []byte, name string, inner func([]byte) error) ([]byte, error) {
	var c canonical
	err := walkFields(b, func(num protowire.Number, typ protowire.Type, v, raw []byte) error {
		if num != 1 {
			return c.keep(num, raw)
		}
		if err := c.known(num, typ); err != nil {
			return err
		}
		if err := inner(v); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	})
	if err == nil && !c.seen(1) {
		err = fmt.Errorf("%s missing", name)
	}
	return c.unknown, err
}

// Unmarshal decodes a Version strictly.
func (m *ProtocolVersion) Unmarshal(b []byte) error {
	*m = ProtocolVersion{}
	var c canonical
	dst := m.fields()
	err := walkFields(b, func(num protowire.Number, typ protowire.Type, v, raw []byte) error {
		if num > 4 {
			return c.keep(num, raw)
		}
		if err := c.known(num, typ); err != nil {
			return err
		}
		if len(v) == 0 {
			return fmt.Errorf("field %d: empty string encoded explicitly", num)
		}
		if !utf8.Valid(v) {
			return fmt.Errorf("field %d: invalid UTF-8", num)
		}
		*dst[num-1] = string(v)
		return nil
	})
	if err != nil {
		*m = ProtocolVersion{}
		return err
	}
	m.unknown = c.unknown
	return nil
}

// canonical tracks field order while decoding one message whose known fields are
// 1..n: known fields must come once each, in increasing order, and before any
// unknown field (whose numbers are then higher, as a canonical encoder writes them).
type canonical struct {
	last    protowire.Number // highest field number seen so far
	mask    uint32           // known fields seen
	unknown []byte           // unknown fields, verbatim
}

func (c *canonical) known(num protowire.Number, typ protowire.Type) error {
	if typ != protowire.BytesType {
		return fmt.Errorf("field %d: wire type %d, want length-delimited", num, typ)
	}
	if num <= c.last {
		return fmt.Errorf("field %d: repeated or out of order", num)
	}
	c.last = num
	c.mask |= 1 << num
	return nil
}

func (c *canonical) seen(num protowire.Number) bool { return c.mask&(1<<num) != 0 }

// keep records an unknown field (raw: tag and value, verbatim).
func (c *canonical) keep(num protowire.Number, raw []byte) error {
	if num < c.last {
		return fmt.Errorf("field %d: out of order", num)
	}
	c.last = num
	c.unknown = append(c.unknown, raw...)
	return nil
}

// walkFields calls fn for each field of a message with its number, wire type, its
// value when length-delimited (else nil), and the raw field (tag included). Tags
// and lengths must be minimal varints.
func walkFields(b []byte, fn func(num protowire.Number, typ protowire.Type, v, raw []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("bad tag: %w", protowire.ParseError(n))
		}
		if !num.IsValid() {
			return fmt.Errorf("bad field number %d", num)
		}
		if n != protowire.SizeTag(num) {
			return fmt.Errorf("field %d: tag is not a minimal varint", num)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(m))
		}
		var v []byte
		if typ == protowire.BytesType {
			val, k := protowire.ConsumeBytes(b[n:])
			if k != protowire.SizeBytes(len(val)) {
				return fmt.Errorf("field %d: length is not a minimal varint", num)
			}
			v = val
		}
		if err := fn(num, typ, v, b[:n+m]); err != nil {
			return err
		}
		b = b[n+m:]
	}
	return nil
}

// QueryGetSpecRequest is lavanet.lava.spec.QueryGetSpecRequest{string ChainID = 1}.
type QueryGetSpecRequest struct {
	ChainID string
}

func (m *QueryGetSpecRequest) Reset()      { *m = QueryGetSpecRequest{} }
func (*QueryGetSpecRequest) ProtoMessage() {}
func (m *QueryGetSpecRequest) String() string {
	return fmt.Sprintf("QueryGetSpecRequest{ChainID:%q}", truncate(m.ChainID))
}
func (m *QueryGetSpecRequest) Size() int { b, _ := m.Marshal(); return len(b) }
func (m *QueryGetSpecRequest) Marshal() ([]byte, error) {
	if m.ChainID == "" {
		return []byte{}, nil
	}
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	return protowire.AppendString(b, m.ChainID), nil
}

// Unmarshal is lenient (it only serves the fake node in tests).
func (m *QueryGetSpecRequest) Unmarshal(b []byte) error {
	*m = QueryGetSpecRequest{}
	return walkFields(b, func(num protowire.Number, typ protowire.Type, v, _ []byte) error {
		if num == 1 && typ == protowire.BytesType {
			m.ChainID = string(v)
		}
		return nil
	})
}

// QueryGetSpecResponse is lavanet.lava.spec.QueryGetSpecResponse{Spec Spec = 1}, of
// which only Spec.average_block_time (field 9, int64 milliseconds) is read. A spec
// is large (about 26 KB for LAV1) and changes shape between Lava releases, so this
// decoder skips everything else, as protobuf decoders do.
type QueryGetSpecResponse struct {
	AverageBlockTimeMs int64
}

func (m *QueryGetSpecResponse) Reset()      { *m = QueryGetSpecResponse{} }
func (*QueryGetSpecResponse) ProtoMessage() {}
func (m *QueryGetSpecResponse) String() string {
	return fmt.Sprintf("QueryGetSpecResponse{Spec:{average_block_time:%d}}", m.AverageBlockTimeMs)
}
func (m *QueryGetSpecResponse) Size() int { b, _ := m.Marshal(); return len(b) }

// Marshal writes a spec holding only average_block_time (used by tests' fake nodes).
func (m *QueryGetSpecResponse) Marshal() ([]byte, error) {
	var spec []byte
	if m.AverageBlockTimeMs != 0 {
		spec = protowire.AppendTag(spec, 9, protowire.VarintType)
		spec = protowire.AppendVarint(spec, uint64(m.AverageBlockTimeMs))
	}
	b := protowire.AppendTag(nil, 1, protowire.BytesType)
	return protowire.AppendBytes(b, spec), nil
}

func (m *QueryGetSpecResponse) Unmarshal(b []byte) error {
	*m = QueryGetSpecResponse{}
	err := walkFields(b, func(num protowire.Number, typ protowire.Type, v, _ []byte) error {
		if num != 1 || typ != protowire.BytesType {
			return nil
		}
		return walkFields(v, func(num protowire.Number, typ protowire.Type, _, raw []byte) error {
			if num != 9 {
				return nil
			}
			if typ != protowire.VarintType {
				return fmt.Errorf("average_block_time: wire type %d, want varint", typ)
			}
			x, _ := protowire.ConsumeVarint(raw[protowire.SizeTag(num):])
			m.AverageBlockTimeMs = int64(x)
			return nil
		})
	})
	if err != nil {
		*m = QueryGetSpecResponse{}
		return fmt.Errorf("decode QueryGetSpecResponse: %w", err)
	}
	return nil
}
