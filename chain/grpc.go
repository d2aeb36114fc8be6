package chain

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/cosmos/cosmos-sdk/client"
	"github.com/cosmos/cosmos-sdk/client/grpc/cmtservice"
	"github.com/cosmos/cosmos-sdk/codec"
	codectypes "github.com/cosmos/cosmos-sdk/codec/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// grpcSource queries a node's gRPC server: the protocol params through the SDK's
// client.Context (set up as `lavad --grpc-addr` sets it up), and chain id, height
// and sync state from the SDK's node service, cosmos.base.tendermint.v1beta1.Service.
type grpcSource struct {
	addr    string
	conn    *grpc.ClientConn
	cctx    client.Context
	node    cmtservice.ServiceClient
	timeout time.Duration
}

func newGRPCSource(o Options) (*grpcSource, error) {
	if _, _, err := net.SplitHostPort(o.GRPCAddr); err != nil {
		return nil, fmt.Errorf("grpc-addr %q: want host:port (no scheme), e.g. 127.0.0.1:9090: %w", o.GRPCAddr, err)
	}
	creds := insecure.NewCredentials()
	if !o.GRPCInsecure {
		conf := &tls.Config{MinVersion: tls.VersionTLS12}
		if o.TLS != nil {
			conf = o.TLS.Clone()
		}
		creds = credentials.NewTLS(conf)
	}
	conn, err := grpc.NewClient(o.GRPCAddr,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(
			// The SDK's codec, as the SDK's own gRPC clients use: it encodes
			// gogoproto messages such as the hand-written ones of this package.
			grpc.ForceCodec(codec.NewProtoCodec(codectypes.NewInterfaceRegistry()).GRPCCodec()),
			grpc.MaxCallRecvMsgSize(int(min(o.MaxResponseSize, int64(1<<31-1)))),
		))
	if err != nil {
		return nil, fmt.Errorf("grpc-addr %q: %w", o.GRPCAddr, err)
	}
	return &grpcSource{
		addr:    o.GRPCAddr,
		conn:    conn,
		cctx:    client.Context{}.WithGRPCClient(conn),
		node:    cmtservice.NewServiceClient(conn),
		timeout: o.RequestTimeout,
	}, nil
}

func (s *grpcSource) String() string { return "grpc://" + s.addr }

func (s *grpcSource) Close() error { return s.conn.Close() }

// call bounds one request by the request timeout.
func (s *grpcSource) call(ctx context.Context, fn func(context.Context) error) error {
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return fn(rctx)
}

func (s *grpcSource) ChainID(ctx context.Context) (string, error) {
	var id string
	err := s.call(ctx, func(ctx context.Context) error {
		res, err := s.node.GetNodeInfo(ctx, &cmtservice.GetNodeInfoRequest{})
		if err != nil {
			return fmt.Errorf("GetNodeInfo: %w", err)
		}
		if res.DefaultNodeInfo == nil {
			return errors.New("GetNodeInfo: no default_node_info")
		}
		id = res.DefaultNodeInfo.Network
		return nil
	})
	return id, err
}

func (s *grpcSource) Query(ctx context.Context) (Snapshot, error) {
	snap := Snapshot{Source: s.String(), At: time.Now()}
	err := s.call(ctx, func(ctx context.Context) error {
		res, err := s.node.GetSyncing(ctx, &cmtservice.GetSyncingRequest{})
		if err != nil {
			return fmt.Errorf("GetSyncing: %w", err)
		}
		snap.CatchingUp = res.Syncing
		return nil
	})
	if err != nil {
		return Snapshot{}, err
	}
	if snap.ChainID, err = s.ChainID(ctx); err != nil {
		return Snapshot{}, err
	}
	if snap.CatchingUp {
		return snap, nil
	}
	var ok bool
	err = s.call(ctx, func(ctx context.Context) (err error) {
		snap.Versions, snap.Height, ok, err = queryParams(ctx, s.cctx)
		return err
	})
	if err != nil {
		return Snapshot{}, err
	}
	if !ok { // a proxy dropped the height header: ask the node service
		if snap.Height, err = s.latestHeight(ctx); err != nil {
			return Snapshot{}, err
		}
	}
	return snap, nil
}

// latestHeight is only a fallback: a whole block is a large answer to poll for.
func (s *grpcSource) latestHeight(ctx context.Context) (int64, error) {
	var h int64
	err := s.call(ctx, func(ctx context.Context) error {
		res, err := s.node.GetLatestBlock(ctx, &cmtservice.GetLatestBlockRequest{})
		if err != nil {
			return fmt.Errorf("GetLatestBlock: %w", err)
		}
		//lint:ignore SA1019 nodes before cosmos-sdk v0.47 fill only the deprecated Block, not SdkBlock: it is the fallback
		legacy := res.Block
		switch {
		case res.SdkBlock != nil:
			h = res.SdkBlock.Header.Height
		case legacy != nil:
			h = legacy.Header.Height
		default:
			return errors.New("GetLatestBlock: no block")
		}
		return nil
	})
	return h, err
}

func (s *grpcSource) BlockTime(ctx context.Context, spec string) (time.Duration, error) {
	var ms int64
	err := s.call(ctx, func(ctx context.Context) (err error) {
		ms, err = querySpecBlockTime(ctx, s.cctx, spec)
		return err
	})
	if err != nil {
		return 0, err
	}
	return checkBlockTime(ms)
}

func (s *grpcSource) Proposals(ctx context.Context) ([]Proposal, error) {
	var ps []Proposal
	err := s.call(ctx, func(ctx context.Context) (err error) {
		ps, err = queryProposals(ctx, s.cctx)
		return err
	})
	return ps, err
}
