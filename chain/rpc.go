package chain

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	cmtbytes "github.com/cometbft/cometbft/libs/bytes"
	rpcclient "github.com/cometbft/cometbft/rpc/client"
	cmthttp "github.com/cometbft/cometbft/rpc/client/http"
	coretypes "github.com/cometbft/cometbft/rpc/core/types"
	"github.com/cosmos/cosmos-sdk/client"
	"github.com/sirupsen/logrus"

	"github.com/lavavisor/lavavisor/redact"
)

// rpcSource queries CometBFT RPC nodes in order on every call: the first that
// answers (and is not catching up) wins, so a failed node is skipped and used
// again as soon as it answers.
type rpcSource struct {
	nodes []*rpcNode
	log   *logrus.Entry
}

type rpcNode struct {
	name    string // URL without credentials
	rpc     *cmthttp.HTTP
	cctx    client.Context
	timeout time.Duration
	down    atomic.Bool // logged when it changes, not on every poll
}

func newRPCSource(nodes []string, o Options) (*rpcSource, error) {
	hc := newHTTPClient(o.RequestTimeout, o.MaxResponseSize, o.TLS)
	s := &rpcSource{log: o.Log}
	for _, n := range nodes {
		u, err := url.Parse(n)
		if err != nil { // its text would quote the URL with its credentials
			return nil, fmt.Errorf("node %q: not a URL; want tcp://host:26657", redact.URL(n))
		}
		switch u.Scheme {
		case "tcp", "http", "https":
		default:
			return nil, fmt.Errorf("node %q: scheme must be tcp://, http://, https:// or file://", redact.URL(n))
		}
		if u.Host == "" {
			return nil, fmt.Errorf("node %q: no host", redact.URL(n))
		}
		c, err := cmthttp.NewWithClient(n, "/websocket", hc)
		if err != nil {
			return nil, fmt.Errorf("node %q: %w", redact.URL(n), err)
		}
		s.nodes = append(s.nodes, &rpcNode{
			name:    redact.URL(n),
			rpc:     c,
			cctx:    client.Context{}.WithClient(c).WithNodeURI(n),
			timeout: o.RequestTimeout,
		})
	}
	return s, nil
}

func (s *rpcSource) String() string {
	names := make([]string, len(s.nodes))
	for i, n := range s.nodes {
		names[i] = n.name
	}
	return strings.Join(names, ",")
}

func (s *rpcSource) Close() error { return nil }

func (s *rpcSource) Query(ctx context.Context) (Snapshot, error) {
	var errs []error
	var behind *Snapshot
	for _, n := range s.nodes {
		snap, err := n.query(ctx)
		if ctx.Err() != nil {
			return Snapshot{}, ctx.Err()
		}
		s.mark(n, err)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", n.name, err))
		case snap.CatchingUp:
			if behind == nil {
				behind = &snap
			}
		default:
			return snap, nil
		}
	}
	if behind != nil {
		return *behind, nil // every node that answered is syncing; the poller says so
	}
	return Snapshot{}, errors.Join(errs...)
}

// mark logs a node going down or coming back, once per change, so that a
// failover is visible without a line on every poll.
func (s *rpcSource) mark(n *rpcNode, err error) {
	if len(s.nodes) < 2 {
		return // the poller's own warning says it all
	}
	if err != nil && !n.down.Swap(true) {
		s.log.WithField("node", n.name).WithError(boundedError{err}).Warn("chain node failed; trying the next")
	}
	if err == nil && n.down.Swap(false) {
		s.log.WithField("node", n.name).Info("chain node answers again")
	}
}

func (s *rpcSource) ChainID(ctx context.Context) (string, error) {
	var errs []error
	for _, n := range s.nodes {
		st, err := n.status(ctx)
		if err == nil {
			return st.NodeInfo.Network, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		errs = append(errs, fmt.Errorf("%s: %w", n.name, err))
	}
	return "", errors.Join(errs...)
}

func (s *rpcSource) BlockTime(ctx context.Context, spec string) (time.Duration, error) {
	var errs []error
	for _, n := range s.nodes {
		rctx, cancel := context.WithTimeout(ctx, n.timeout)
		ms, err := querySpecBlockTime(rctx, n.clientContext(rctx), spec)
		cancel()
		if err == nil {
			return checkBlockTime(ms)
		}
		if errors.Is(err, errSpecNotFound) {
			return 0, err // an answer: the next node has the same chain state
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		errs = append(errs, fmt.Errorf("%s: %w", n.name, err))
	}
	return 0, errors.Join(errs...)
}

func (n *rpcNode) status(ctx context.Context) (*coretypes.ResultStatus, error) {
	rctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	st, err := n.rpc.Status(rctx)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	return st, nil
}

// query reads /status (chain id, catching up) and then the params.
func (n *rpcNode) query(ctx context.Context) (Snapshot, error) {
	st, err := n.status(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	snap := Snapshot{
		ChainID:    st.NodeInfo.Network,
		Height:     st.SyncInfo.LatestBlockHeight,
		CatchingUp: st.SyncInfo.CatchingUp,
		Source:     n.name,
		At:         time.Now(),
	}
	if snap.CatchingUp {
		return snap, nil
	}
	rctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	v, h, ok, err := queryParams(rctx, n.clientContext(rctx))
	if err != nil {
		return Snapshot{}, err
	}
	if ok { // the height the query ran at, rather than /status's a moment before
		snap.Height = h
	}
	snap.Versions = v
	return snap, nil
}

// clientContext binds ctx to the ABCI queries of the SDK's client.Context: its
// QueryABCI calls the node with context.Background(), so without this a request
// would outlive a cancelled poller (bounded only by the HTTP client's timeout).
func (n *rpcNode) clientContext(ctx context.Context) client.Context {
	return n.cctx.WithClient(boundRPC{HTTP: n.rpc, ctx: ctx})
}

type boundRPC struct {
	*cmthttp.HTTP
	ctx context.Context
}

func (b boundRPC) ABCIQueryWithOptions(_ context.Context, path string, data cmtbytes.HexBytes,
	opts rpcclient.ABCIQueryOptions,
) (*coretypes.ResultABCIQuery, error) {
	return b.HTTP.ABCIQueryWithOptions(b.ctx, path, data, opts)
}

func (b boundRPC) ABCIQuery(_ context.Context, path string, data cmtbytes.HexBytes) (*coretypes.ResultABCIQuery, error) {
	return b.HTTP.ABCIQuery(b.ctx, path, data)
}

// Proposals asks the nodes in order, as Query does.
func (s *rpcSource) Proposals(ctx context.Context) ([]Proposal, error) {
	var errs []error
	for _, n := range s.nodes {
		rctx, cancel := context.WithTimeout(ctx, n.timeout)
		ps, err := queryProposals(rctx, n.clientContext(rctx))
		cancel()
		if err == nil {
			return ps, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		errs = append(errs, fmt.Errorf("%s: %w", n.name, err))
	}
	return nil, errors.Join(errs...)
}
