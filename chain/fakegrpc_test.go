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
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
)

// newFakeGRPC serves the fake node over plain gRPC, or TLS with a fresh
// self-signed certificate for 127.0.0.1, whose pool it returns for the client.
func newFakeGRPC(t *testing.T, useTLS bool) (*fakeNode, *x509.CertPool) {
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
func newFakeGRPCSlowTLS(t *testing.T, useTLS bool, delay time.Duration) (*fakeNode, *x509.CertPool) {
	t.Helper()
	n := newFake(t)
	opts := []grpc.ServerOption{grpc.UnaryInterceptor(n.stripHeader)}
	var pool *x509.CertPool
	if useTLS {
		cert, p := selfSignedCert(t)
		pool = p
		opts = append(opts, grpc.Creds(slowHandshake{credentials.NewServerTLSFromCert(&cert), delay}))
	}
	n.addr = n.ServeGRPC(opts...)
	return n, pool
}

// setNoHeader makes the gRPC answers leave out x-cosmos-block-height, as a
// stripping proxy would.
func (n *fakeNode) setNoHeader(b bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.noHeader = b
}

// stripHeader drops the headers a handler sets when noHeader is set.
func (n *fakeNode) stripHeader(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	n.mu.Lock()
	strip := n.noHeader
	n.mu.Unlock()
	if strip {
		ctx = grpc.NewContextWithServerTransportStream(ctx, noHeaderStream{grpc.ServerTransportStreamFromContext(ctx)})
	}
	return h(ctx, req)
}

// noHeaderStream is a server stream whose header is never set.
type noHeaderStream struct{ grpc.ServerTransportStream }

func (noHeaderStream) SetHeader(metadata.MD) error { return nil }

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
