package chaintest

import (
	"context"
	"net"
	"strconv"
	"strings"

	"github.com/cometbft/cometbft/proto/tendermint/p2p"
	"github.com/cosmos/cosmos-sdk/client/grpc/cmtservice"
	"github.com/cosmos/cosmos-sdk/codec"
	codectypes "github.com/cosmos/cosmos-sdk/codec/types"
	grpctypes "github.com/cosmos/cosmos-sdk/types/grpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// ServeGRPC serves the node's gRPC on a 127.0.0.1 port until the test ends,
// and returns its host:port: the protocol, spec and gov queries, and the
// SDK's node service (GetNodeInfo, GetSyncing, GetLatestBlock), with the
// server codec of a Cosmos SDK node. opts are added to the server's (TLS
// credentials, an interceptor).
func (n *Node) ServeGRPC(opts ...grpc.ServerOption) string {
	n.t.Helper()
	s := grpc.NewServer(append([]grpc.ServerOption{
		grpc.ForceServerCodec(codec.NewProtoCodec(codectypes.NewInterfaceRegistry()).GRPCCodec()),
		grpc.ChainUnaryInterceptor(n.intercept),
	}, opts...)...)
	for _, m := range []string{MethodParams, MethodSpec, MethodProposals} {
		s.RegisterService(n.queryService(m), nil)
	}
	cmtservice.RegisterServiceServer(s, &nodeService{n: n})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		n.t.Fatalf("chaintest: listen for gRPC: %v", err)
	}
	go s.Serve(l)
	n.t.Cleanup(s.Stop)
	return l.Addr().String()
}

// intercept calls the OnRequest callback before each gRPC request.
func (n *Node) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	n.request(ctx, info.FullMethod)
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err() // the client gave up while the request was held
	}
	return h(ctx, req)
}

// rawMessage is a gRPC message received or sent as its protobuf bytes.
type rawMessage []byte

func (m *rawMessage) Reset()                   { *m = nil }
func (m *rawMessage) String() string           { return "raw" }
func (*rawMessage) ProtoMessage()              {}
func (m *rawMessage) Marshal() ([]byte, error) { return *m, nil }
func (m *rawMessage) Size() int                { return len(*m) }
func (m *rawMessage) Unmarshal(b []byte) error { *m = append(rawMessage(nil), b...); return nil }

// queryService is the service of one query method, answering raw bytes.
func (n *Node) queryService(fullMethod string) *grpc.ServiceDesc {
	service, method, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	answer := func(ctx context.Context, req any) (any, error) {
		return n.query(ctx, fullMethod, *req.(*rawMessage))
	}
	return &grpc.ServiceDesc{
		ServiceName: service,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: method,
			Handler: func(_ any, ctx context.Context, dec func(any) error, intercept grpc.UnaryServerInterceptor) (any, error) {
				req := new(rawMessage)
				if err := dec(req); err != nil {
					return nil, err
				}
				if intercept == nil {
					return answer(ctx, req)
				}
				return intercept(ctx, req, &grpc.UnaryServerInfo{FullMethod: fullMethod}, answer)
			},
		}},
	}
}

// query answers a query method from the state, with the height in the
// header, as a node does.
func (n *Node) query(ctx context.Context, method string, req []byte) (any, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := &n.state
	var v []byte
	switch method {
	case MethodParams:
		if s.Params == nil {
			return nil, unknownService(method)
		}
		v = s.Params
	case MethodSpec:
		id, err := decodeSpecRequest(req)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, n.reject("QueryGetSpecRequest %x: %v", req, err).Error())
		}
		var ok bool
		if v, ok = s.Specs[id]; !ok {
			return nil, status.Error(codes.InvalidArgument, n.rec.specNotFound) // as Lava answers
		}
	case MethodProposals:
		page, ok, err := n.page(req)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		if !ok {
			return nil, unknownService(method)
		}
		v = page
	}
	grpc.SetHeader(ctx, metadata.Pairs(grpctypes.GRPCBlockHeightHeader, strconv.FormatInt(s.Height, 10)))
	m := rawMessage(v)
	return &m, nil
}

// unknownService is grpc-go's answer for a service a server does not have.
func unknownService(fullMethod string) error {
	service, _, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	return status.Errorf(codes.Unimplemented, "unknown service %v", service)
}

// nodeService is the SDK's node service, cosmos.base.tendermint.v1beta1.Service.
type nodeService struct {
	cmtservice.UnimplementedServiceServer
	n *Node
}

// GetNodeInfo answers the state's chain id and the recorded node's version.
func (s *nodeService) GetNodeInfo(context.Context, *cmtservice.GetNodeInfoRequest) (*cmtservice.GetNodeInfoResponse, error) {
	s.n.mu.Lock()
	defer s.n.mu.Unlock()
	return &cmtservice.GetNodeInfoResponse{DefaultNodeInfo: &p2p.DefaultNodeInfo{Network: s.n.state.Network, Version: s.n.rec.version}}, nil
}

func (s *nodeService) GetSyncing(context.Context, *cmtservice.GetSyncingRequest) (*cmtservice.GetSyncingResponse, error) {
	s.n.mu.Lock()
	defer s.n.mu.Unlock()
	return &cmtservice.GetSyncingResponse{Syncing: s.n.state.CatchingUp}, nil
}

func (s *nodeService) GetLatestBlock(context.Context, *cmtservice.GetLatestBlockRequest) (*cmtservice.GetLatestBlockResponse, error) {
	s.n.mu.Lock()
	defer s.n.mu.Unlock()
	return &cmtservice.GetLatestBlockResponse{SdkBlock: &cmtservice.Block{Header: cmtservice.Header{Height: s.n.state.Height}}}, nil
}
