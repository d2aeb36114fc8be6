package chaintest

import (
	"context"
	"go/parser"
	"go/token"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cosmos/cosmos-sdk/client/grpc/cmtservice"
	"github.com/cosmos/cosmos-sdk/codec"
	codectypes "github.com/cosmos/cosmos-sdk/codec/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// The callback sees each request by the names the Method constants give,
// over both transports, before the node reads its state.
func TestOnRequestMethods(t *testing.T) {
	n := New(t, "../testdata")
	var mu sync.Mutex
	var seen []string
	n.OnRequest(func(_ context.Context, method string) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, method)
		n.Set(func(s *State) { s.Height++ })
	})
	srv := httptest.NewServer(n)
	defer srv.Close()
	resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"status","params":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.Get(srv.URL + `/abci_query?path="` + MethodParams + `"`)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	conn, err := grpc.NewClient(n.ServeGRPC(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(codec.NewProtoCodec(codectypes.NewInterfaceRegistry()).GRPCCodec())))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := cmtservice.NewServiceClient(conn).GetSyncing(context.Background(), &cmtservice.GetSyncingRequest{}); err != nil {
		t.Fatal(err)
	}
	var header metadata.MD
	var res rawMessage
	if err := conn.Invoke(context.Background(), MethodProposals, &rawMessage{0x08, votingPeriod}, &res, grpc.Header(&header)); err == nil {
		t.Fatal("proposals answered with none set")
	}
	n.Set(func(s *State) { s.Proposals = [][]byte{{0x12, 0x00}} })
	if err := conn.Invoke(context.Background(), MethodProposals, &rawMessage{0x08, votingPeriod}, &res, grpc.Header(&header)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{MethodStatus, MethodParams, MethodGetSyncing, MethodProposals, MethodProposals}; !slices.Equal(seen, want) {
		t.Fatalf("methods %q, want %q", seen, want)
	}
	// The recorded params were at 39; five requests each raised the height
	// before it was read.
	if string(res) != "\x12\x00" || strings.Join(header.Get("x-cosmos-block-height"), ",") != strconv.Itoa(39+5) {
		t.Fatalf("answer %x, header %q", res, header)
	}
}

// Only tests import chaintest: no non-test file of the module does.
func TestOnlyTestsImportChaintest(t *testing.T) {
	const self = "github.com/lavavisor/lavavisor/chain/chaintest"
	root := filepath.Join("..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	fset := token.NewFileSet()
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		files++
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == self {
				t.Errorf("%s imports %s: only _test.go files may", path, self)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 20 {
		t.Fatalf("only %d files read from %s", files, root)
	}
}
