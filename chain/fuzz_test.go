package chain

import (
	"bytes"
	"regexp"
	"strconv"
	"testing"

	"github.com/cosmos/cosmos-sdk/codec"
	codectypes "github.com/cosmos/cosmos-sdk/codec/types"
)

// FuzzParseVersion: ParseVersion agrees with the grammar of SPEC §6.1 written as
// the regexp plus the 10000 bound, and every accepted version prints back to
// the very string it came from (so a version is only ever digits and dots).
func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"6.2.5", "0.0.0", "10000.10000.10000", "10001.0.0", "06.2.5", "1.2", "../../x",
		"9.9.9; rm -rf /", "v6.2.5", "6.2.5\n", "1.2.3.4", "６.2.5", "99999.1.1"} {
		f.Add(s)
	}
	re := regexp.MustCompile(`^(0|[1-9]\d{0,4})\.(0|[1-9]\d{0,4})\.(0|[1-9]\d{0,4})$`)
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersion(s)
		ref := re.FindStringSubmatch(s) != nil
		if ref {
			for _, p := range re.FindStringSubmatch(s)[1:] {
				if n, _ := strconv.Atoi(p); n > MaxVersionPart {
					ref = false
				}
			}
		}
		if (err == nil) != ref {
			t.Fatalf("ParseVersion(%q) error %v, reference accepts: %v", s, err, ref)
		}
		if err != nil {
			// Bounded whatever the input: 40 runes at most, each quoted in at most 10 bytes.
			if len(err.Error()) > 512 {
				t.Fatalf("error of %d bytes for %d input bytes", len(err.Error()), len(s))
			}
			return
		}
		if v.String() != s {
			t.Fatalf("ParseVersion(%q).String() = %q", s, v.String())
		}
		if tv, err := ParseTag(v.Tag()); err != nil || tv != v {
			t.Fatalf("ParseTag(%q) = %v, %v", v.Tag(), tv, err)
		}
		if v.Compare(v) != 0 || v.Less(v) || !v.valid() {
			t.Fatalf("%s not equal to itself or out of range", v)
		}
	})
}

// FuzzDecodeParams: the decoder accepts only canonical encodings, so whatever it
// accepts re-encodes to exactly the input bytes (and decodes again to the same);
// what it rejects leaves nothing behind; the versions it lets through are valid
// and print back to the strings on the wire; the Cosmos SDK codec, which the
// client.Context uses, agrees with it.
func FuzzDecodeParams(f *testing.F) {
	for _, name := range []string{"abci_query_protocol_params.json", "abci_query_protocol_params_at_height_884.json",
		"abci_query_protocol_params_final.json"} {
		f.Add(recordedValue(f, name))
	}
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})
	cdc := codec.NewProtoCodec(codectypes.NewInterfaceRegistry())
	f.Fuzz(func(t *testing.T, b []byte) {
		var m QueryParamsResponse
		err := m.Unmarshal(b)
		if err != nil {
			pv := m.Params.Version
			if pv.ProviderTarget+pv.ProviderMin+pv.ConsumerTarget+pv.ConsumerMin != "" ||
				m.unknown != nil || m.Params.unknown != nil || pv.unknown != nil {
				t.Fatalf("rejected % x (%v) but kept %s", b, err, m.String())
			}
			return
		}
		again, _ := m.Marshal()
		if !bytes.Equal(again, b) {
			t.Fatalf("accepted % x which re-encodes to % x", b, again)
		}
		if m.Size() != len(b) {
			t.Fatalf("Size %d for %d bytes", m.Size(), len(b))
		}
		var m2 QueryParamsResponse
		if err := cdc.Unmarshal(b, &m2); err != nil {
			t.Fatalf("SDK codec rejects what Unmarshal accepts: %v", err)
		}
		if sdkBytes, err := cdc.Marshal(&m2); err != nil || !bytes.Equal(sdkBytes, b) {
			t.Fatalf("SDK codec round trip: % x, %v", sdkBytes, err)
		}
		v, err := m.Versions()
		if err != nil {
			return
		}
		if err := v.Validate(); err != nil {
			t.Fatalf("Versions() let %s through: %v", v, err)
		}
		wire := m.Params.Version
		if v.ProviderTarget.String() != wire.ProviderTarget || v.ProviderMin.String() != wire.ProviderMin ||
			v.ConsumerTarget.String() != wire.ConsumerTarget || v.ConsumerMin.String() != wire.ConsumerMin {
			t.Fatalf("versions %s from wire %s", v, wire.String())
		}
	})
}

// FuzzDecodeSpec: the lenient spec decoder never panics, and an accepted block
// time survives a round trip.
func FuzzDecodeSpec(f *testing.F) {
	f.Add(recordedValue(f, "abci_query_spec_LAV1.json"))
	f.Add(lavaSpec(15000))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m QueryGetSpecResponse
		if err := m.Unmarshal(b); err != nil {
			if m.AverageBlockTimeMs != 0 {
				t.Fatal("rejected but kept a value")
			}
			return
		}
		enc, _ := m.Marshal()
		var back QueryGetSpecResponse
		if err := back.Unmarshal(enc); err != nil || back != m {
			t.Fatalf("round trip of %d: %v %d", m.AverageBlockTimeMs, err, back.AverageBlockTimeMs)
		}
	})
}
