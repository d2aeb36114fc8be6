package chain

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cosmos/cosmos-sdk/client"
	grpctypes "github.com/cosmos/cosmos-sdk/types/grpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// queryParams asks the protocol module for its Params through a Cosmos SDK
// client.Context, the way `lavad q protocol params` does: over ABCI on the
// context's CometBFT client, or over gRPC when its GRPCClient is set. Either way
// the height comes back in the x-cosmos-block-height header (ok false when a
// gRPC server left it out).
func queryParams(ctx context.Context, cctx client.Context) (v Versions, height int64, ok bool, err error) {
	var md metadata.MD
	var res QueryParamsResponse
	if err := cctx.Invoke(ctx, paramsMethod, &QueryParamsRequest{}, &res, grpc.Header(&md)); err != nil {
		return Versions{}, 0, false, fmt.Errorf("query %s: %w", paramsMethod, err)
	}
	v, err = res.Versions()
	if err != nil {
		return Versions{}, 0, false, fmt.Errorf("invalid protocol versions: %w", err)
	}
	hs := md.Get(grpctypes.GRPCBlockHeightHeader)
	if len(hs) == 0 {
		return v, 0, false, nil
	}
	height, err = strconv.ParseInt(hs[0], 10, 64)
	if err != nil || height < 0 {
		return Versions{}, 0, false, fmt.Errorf("bad %s header %q", grpctypes.GRPCBlockHeightHeader, truncate(hs[0]))
	}
	return v, height, true, nil
}

// errSpecNotFound is the node's answer for a spec it does not have.
var errSpecNotFound = errors.New("not found")

// querySpecBlockTime reads a Lava spec's average_block_time in milliseconds.
func querySpecBlockTime(ctx context.Context, cctx client.Context, spec string) (int64, error) {
	var res QueryGetSpecResponse
	if err := cctx.Invoke(ctx, specMethod, &QueryGetSpecRequest{ChainID: spec}, &res); err != nil {
		if isNotFound(err) {
			return 0, errSpecNotFound
		}
		return 0, fmt.Errorf("query %s %s: %w", specMethod, spec, err)
	}
	return res.AverageBlockTimeMs, nil
}

// isNotFound recognises a missing spec. Lava answers gRPC InvalidArgument "not
// found" (recorded over REST as {"code":3,"message":"not found"}); over ABCI the
// SDK turns that into code 18 and the client back into InvalidArgument.
func isNotFound(err error) bool {
	s, ok := status.FromError(err)
	if !ok {
		return false
	}
	return (s.Code() == codes.InvalidArgument || s.Code() == codes.NotFound) &&
		strings.Contains(s.Message(), "not found")
}

// queryProposals lists the version proposals in voting period, page by page,
// through the same client.Context as the params (ABCI or gRPC).
func queryProposals(ctx context.Context, cctx client.Context) ([]Proposal, error) {
	var all []Proposal
	var key []byte
	for page := 0; ; page++ {
		if page == maxProposalPages {
			return nil, fmt.Errorf("query %s: more than %d pages", proposalsMethod, maxProposalPages)
		}
		var res QueryProposalsResponse
		req := &QueryProposalsRequest{Status: statusVotingPeriod, Key: key}
		if err := cctx.Invoke(ctx, proposalsMethod, req, &res); err != nil {
			return nil, fmt.Errorf("query %s: %w", proposalsMethod, err)
		}
		all = append(all, res.Proposals...)
		if len(res.NextKey) == 0 || len(all) >= MaxProposals {
			return sortProposals(all), nil
		}
		key = res.NextKey
	}
}
