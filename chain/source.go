package chain

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// Defaults used when Options leaves a bound at zero.
const (
	DefaultRequestTimeout  = 10 * time.Second
	DefaultMaxResponseSize = 4 << 20 // a Lava spec is about 30 KB; params under 100 bytes
	DefaultPollInterval    = 15 * time.Second
)

// Source answers the chain's protocol versions.
type Source interface {
	// Query reads the four versions once, with the height and chain id of the answer.
	Query(ctx context.Context) (Snapshot, error)
	// ChainID is the node's chain id ("" for a file source).
	ChainID(ctx context.Context) (string, error)
	// BlockTime is the average_block_time of the Lava spec with this index.
	BlockTime(ctx context.Context, spec string) (time.Duration, error)
	// String names the source for logs (node credentials removed).
	String() string
	// Close releases connections.
	Close() error
}

// Options select and bound a Source.
type Options struct {
	// Nodes is the `node` setting: CometBFT RPC URLs (tcp://, http://, https://)
	// separated by commas, tried in order on every poll, or one file:///abs/path.
	Nodes string
	// GRPCAddr (host:port), when set, makes the queries go over gRPC instead.
	GRPCAddr     string
	GRPCInsecure bool
	// TLS is the client TLS configuration for https:// nodes and gRPC; nil uses
	// the system roots. Tests set it to trust their own certificate.
	TLS *tls.Config
	// RequestTimeout bounds one request; MaxResponseSize one response (RPC and gRPC).
	RequestTimeout  time.Duration
	MaxResponseSize int64
	Log             *logrus.Entry
}

func (o Options) withDefaults() Options {
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.MaxResponseSize <= 0 {
		o.MaxResponseSize = DefaultMaxResponseSize
	}
	if o.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		o.Log = logrus.NewEntry(l)
	}
	return o
}

// NewSource picks the source the options describe: a versions file, gRPC when
// GRPCAddr is set, else CometBFT RPC with failover over the listed nodes.
func NewSource(o Options) (Source, error) {
	o = o.withDefaults()
	nodes := splitNodes(o.Nodes)
	for _, n := range nodes {
		if !strings.HasPrefix(strings.ToLower(n), "file:") {
			continue
		}
		if len(nodes) > 1 {
			return nil, fmt.Errorf("node %q: a file:// source cannot be listed with other nodes", o.Nodes)
		}
		if o.GRPCAddr != "" {
			return nil, fmt.Errorf("node %q: a file:// source cannot be used with grpc-addr %q", n, o.GRPCAddr)
		}
		return newFileSource(n)
	}
	if o.GRPCAddr != "" {
		return newGRPCSource(o)
	}
	if len(nodes) == 0 {
		return nil, errors.New("no node configured: set node (tcp://host:26657) or grpc-addr")
	}
	return newRPCSource(nodes, o)
}

func splitNodes(s string) []string {
	var out []string
	for _, n := range strings.Split(s, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// Errors of CheckChainID that must stop a start (errors.Is), as opposed to a
// node that cannot be reached.
var (
	ErrChainIDMismatch = errors.New("chain id mismatch")
	ErrChainIDWithFile = errors.New("chain-id cannot be checked")
)

// CheckChainID compares the node's chain id with the configured one. With want
// empty it logs the node's id and accepts it. A file source has no chain id, so
// a configured one is an error there.
func CheckChainID(ctx context.Context, src Source, want string, log *logrus.Entry) error {
	if _, ok := src.(*fileSource); ok {
		if want != "" {
			return fmt.Errorf("%w: %q is set but node %s is a static file, which has no chain id",
				ErrChainIDWithFile, want, src)
		}
		return nil
	}
	got, err := src.ChainID(ctx)
	if err != nil {
		return fmt.Errorf("read chain id from %s: %w", src, err)
	}
	if want == "" {
		if log != nil {
			log.WithFields(logrus.Fields{"chain_id": got, "node": src.String()}).
				Info("chain-id not configured; using the node's")
		}
		return nil
	}
	if got != want {
		return fmt.Errorf("%w: node reports %q, config says %q", ErrChainIDMismatch, got, want)
	}
	return nil
}

// Block times outside this range are not believed: a node could otherwise make
// LavaVisor poll in a busy loop, or hardly ever.
const (
	minBlockTime = 100 * time.Millisecond
	maxBlockTime = 10 * time.Minute
)

// PollInterval returns the interval to poll at and where it comes from: the
// configured one when above zero; else the average block time of spec LAV1, then
// LAVA; else DefaultPollInterval (the text then says why).
func PollInterval(ctx context.Context, src Source, configured time.Duration) (time.Duration, string) {
	if configured > 0 {
		return configured, "poll-interval setting"
	}
	var why []string
	// LAV1 is the testnet's spec index, LAVA mainnet's.
	for _, spec := range [...]string{"LAV1", "LAVA"} {
		d, err := src.BlockTime(ctx, spec)
		if err == nil {
			return d, fmt.Sprintf("spec %s average_block_time", spec)
		}
		why = append(why, fmt.Sprintf("spec %s: %s", spec, boundedError{err}.Error()))
		if ctx.Err() != nil {
			break
		}
	}
	return DefaultPollInterval, fmt.Sprintf("default (%s)", strings.Join(why, "; "))
}

func checkBlockTime(ms int64) (time.Duration, error) {
	if ms < minBlockTime.Milliseconds() || ms > maxBlockTime.Milliseconds() {
		return 0, fmt.Errorf("average_block_time %d ms outside [%s, %s]", ms, minBlockTime, maxBlockTime)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// boundedError keeps log lines short whatever a node answered.
type boundedError struct{ err error }

func (e boundedError) Error() string {
	s := e.err.Error()
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}

func (e boundedError) Unwrap() error { return e.err }
