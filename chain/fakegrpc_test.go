package chain

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cometbft/cometbft/proto/tendermint/p2p"
	"github.com/cosmos/cosmos-sdk/client/grpc/cmtservice"
	"github.com/cosmos/cosmos-sdk/codec"
	codectypes "github.com/cosmos/cosmos-sdk/codec/types"
	grpctypes "github.com/cosmos/cosmos-sdk/types/grpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// fakeGRPC is a node's gRPC server on 127.0.0.1: the protocol and spec query
// services answering recorded bytes, and the SDK's node service, with the server
// codec a Cosmos SDK node uses.
type fakeGRPC struct {
	cmtservice.UnimplementedServiceServer
	addr string

	mu        sync.Mutex
	value     []byte
	height    int64
	network   string
	syncing   bool
	noHeader  bool   // leave out x-cosmos-block-height, as a stripping proxy would
	mode      string // "", modeHang, modeHuge
	specs     map[string][]byte
	proposals []byte // one page of QueryProposalsResponse
}

// rawMessage sends or receives bytes as they are.
type rawMessage []byte

func (m *rawMessage) Reset()                   { *m = nil }
func (m *rawMessage) String() string           { return "raw" }
func (*rawMessage) ProtoMessage()              {}
func (m *rawMessage) Marshal() ([]byte, error) { return *m, nil }
func (m *rawMessage) Size() int                { return len(*m) }
func (m *rawMessage) Unmarshal(b []byte) error { *m = append(rawMessage(nil), b...); return nil }

func queryServiceDesc(service, method string, handler func(*fakeGRPC, context.Context, []byte) (any, error)) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: service,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: method,
			Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				var req rawMessage
				if err := dec(&req); err != nil {
					return nil, err
				}
				return handler(srv.(*fakeGRPC), ctx, req)
			},
		}},
	}
}

// newFakeGRPC serves plain gRPC, or TLS with a fresh self-signed certificate
// for 127.0.0.1, whose pool it returns for the client.
func newFakeGRPC(t *testing.T, useTLS bool) (*fakeGRPC, *x509.CertPool) {
	t.Helper()
	return newFakeGRPCSlowTLS(t, useTLS, 0)
}

// slowHandshake delays the server's side of each TLS handshake, as a busy
// machine under -race does.
type slowHandshake struct {
	credentials.TransportCredentials
	delay time.Duration
}

func (c slowHandshake) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	time.Sleep(c.delay) // the slowness simulated, not a synchronisation
	return c.TransportCredentials.ServerHandshake(conn)
}

// newFakeGRPCSlowTLS is newFakeGRPC with each TLS handshake delayed by delay.
func newFakeGRPCSlowTLS(t *testing.T, useTLS bool, delay time.Duration) (*fakeGRPC, *x509.CertPool) {
	t.Helper()
	f := &fakeGRPC{network: "lava", height: 39, specs: map[string][]byte{}}
	f.value = recordedValue(t, "abci_query_protocol_params.json")
	f.specs["LAV1"] = recordedValue(t, "abci_query_spec_LAV1.json")
	opts := []grpc.ServerOption{grpc.ForceServerCodec(codec.NewProtoCodec(codectypes.NewInterfaceRegistry()).GRPCCodec())}
	var pool *x509.CertPool
	if useTLS {
		cert, p := selfSignedCert(t)
		pool = p
		opts = append(opts, grpc.Creds(slowHandshake{credentials.NewServerTLSFromCert(&cert), delay}))
	}
	s := grpc.NewServer(opts...)
	s.RegisterService(queryServiceDesc("lavanet.lava.protocol.Query", "Params", (*fakeGRPC).params), f)
	s.RegisterService(queryServiceDesc("lavanet.lava.spec.Query", "Spec", (*fakeGRPC).spec), f)
	s.RegisterService(queryServiceDesc("cosmos.gov.v1.Query", "Proposals", (*fakeGRPC).govProposals), f)
	cmtservice.RegisterServiceServer(s, f)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = l.Addr().String()
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return f, pool
}

func (f *fakeGRPC) set(fn func(f *fakeGRPC)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// misbehave answers in place of the handler when a fault mode is set.
func (f *fakeGRPC) misbehave(ctx context.Context) (res any, handled bool, err error) {
	f.mu.Lock()
	mode := f.mode
	f.mu.Unlock()
	switch mode {
	case modeHang:
		<-ctx.Done()
		return nil, true, ctx.Err()
	case modeHuge:
		big := rawMessage(make([]byte, 1<<20))
		return &big, true, nil
	}
	return nil, false, nil
}

func (f *fakeGRPC) params(ctx context.Context, _ []byte) (any, error) {
	if res, ok, err := f.misbehave(ctx); ok {
		return res, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.noHeader {
		grpc.SetHeader(ctx, metadata.Pairs(grpctypes.GRPCBlockHeightHeader, strconv.FormatInt(f.height, 10)))
	}
	v := rawMessage(f.value)
	return &v, nil
}

func (f *fakeGRPC) govProposals(ctx context.Context, req []byte) (any, error) {
	var r QueryProposalsRequest
	if err := r.Unmarshal(req); err != nil || r.Status != statusVotingPeriod {
		return nil, status.Errorf(codes.InvalidArgument, "bad request %v", err)
	}
	f.mu.Lock()
	v := rawMessage(f.proposals)
	f.mu.Unlock()
	return &v, nil
}

// spec answers a missing spec as Lava does: InvalidArgument "not found", the
// code and message recorded over REST.
func (f *fakeGRPC) spec(ctx context.Context, req []byte) (any, error) {
	var r QueryGetSpecRequest
	if err := r.Unmarshal(req); err != nil {
		return nil, err
	}
	f.mu.Lock()
	v, ok := f.specs[r.ChainID]
	f.mu.Unlock()
	if !ok {
		return nil, status.Error(codes.InvalidArgument, "not found")
	}
	m := rawMessage(v)
	return &m, nil
}

func (f *fakeGRPC) GetNodeInfo(ctx context.Context, _ *cmtservice.GetNodeInfoRequest) (*cmtservice.GetNodeInfoResponse, error) {
	if _, ok, err := f.misbehave(ctx); ok && err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return &cmtservice.GetNodeInfoResponse{DefaultNodeInfo: &p2p.DefaultNodeInfo{Network: f.network, Version: "0.37.5"}}, nil
}

func (f *fakeGRPC) GetSyncing(ctx context.Context, _ *cmtservice.GetSyncingRequest) (*cmtservice.GetSyncingResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &cmtservice.GetSyncingResponse{Syncing: f.syncing}, nil
}

func (f *fakeGRPC) GetLatestBlock(ctx context.Context, _ *cmtservice.GetLatestBlockRequest) (*cmtservice.GetLatestBlockResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &cmtservice.GetLatestBlockResponse{SdkBlock: &cmtservice.Block{Header: cmtservice.Header{Height: f.height}}}, nil
}

func selfSignedCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "fake lava node"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
