package health

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// bodyLimit bounds what one HTTP check reads: the status decides, the body
// is read only so that a small one leaves the connection reusable.
const bodyLimit = 64 << 10

// execOutputLimit bounds what an exec check keeps: only its first line
// goes into the reason.
const execOutputLimit = 4 << 10

// reasonLineLimit keeps a chatty check's first line from flooding logs and
// state.json's bad mark.
const reasonLineLimit = 200

// ExecFunc runs argv through LavaVisor's one reaper in its own process
// group, killed as a group when ctx ends, returning at most limit bytes of
// output; supervisor.(*Reaper).Output is what the caller passes. An error
// for a non-zero exit reads "<name>: exit code N" (the reaper's wording).
type ExecFunc func(ctx context.Context, limit int, name string, args ...string) ([]byte, error)

// Probe runs one check with spec.Timeout. A nil error means healthy; an
// error is the reason: "GET http://127.0.0.1:7776/x: 503", "timeout after
// 2s", "dial tcp 127.0.0.1:2220: connect: connection refused",
// "exec /x: exit code 1: <first line of output>". A timeout error matches
// context.DeadlineExceeded with errors.Is.
func Probe(ctx context.Context, spec Spec, run ExecFunc) error {
	p := newProber(spec, run, false)
	defer p.close()
	return p.probe(ctx)
}

// prober holds what checks of one Spec can share: for HTTP, one client and
// its Transport, so that a Monitor does not build them every check.
type prober struct {
	spec   Spec
	run    ExecFunc
	url    *url.URL
	urlErr error
	client *http.Client
	dialer net.Dialer
}

func newProber(spec Spec, run ExecFunc, keepAlive bool) *prober {
	p := &prober{spec: spec, run: run}
	if spec.HTTP == "" {
		return p
	}
	p.url, p.urlErr = url.Parse(spec.HTTP)
	if p.urlErr == nil && p.url.Scheme != "http" && p.url.Scheme != "https" {
		p.urlErr = fmt.Errorf("scheme %q: want http or https", p.url.Scheme)
	}
	tr := &http.Transport{
		// Health checks talk to what the operator configured: no proxy
		// from the environment (HTTPS_PROXY is for downloads).
		Proxy:       nil,
		DialContext: p.dialer.DialContext,
		TLSClientConfig: &tls.Config{
			InsecureSkipVerify: spec.InsecureTLS,
		},
		DisableKeepAlives:      !keepAlive,
		DisableCompression:     true,
		MaxIdleConns:           1,
		MaxIdleConnsPerHost:    1,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: bodyLimit,
	}
	p.client = &http.Client{
		Transport: tr,
		// A redirect is not a 2xx: the check names the URL that answers.
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return p
}

func (p *prober) close() {
	if p.client != nil {
		p.client.CloseIdleConnections()
	}
}

func (p *prober) probe(ctx context.Context) error {
	cctx := ctx
	if p.spec.Timeout > 0 {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(ctx, p.spec.Timeout)
		defer cancel()
	}
	var err error
	switch {
	case p.spec.HTTP != "" && p.spec.TCP == "" && len(p.spec.Exec) == 0:
		err = p.probeHTTP(cctx)
	case p.spec.TCP != "" && p.spec.HTTP == "" && len(p.spec.Exec) == 0:
		err = p.probeTCP(cctx)
	case len(p.spec.Exec) > 0 && p.spec.HTTP == "" && p.spec.TCP == "":
		err = p.probeExec(cctx)
	case p.spec.IsZero():
		return errors.New("no health check configured")
	default:
		return errors.New("more than one health check configured (http, tcp, exec)")
	}
	// The check's own deadline, not the caller's cancellation, is a timeout.
	if err != nil && ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
		return timeoutError{p.spec.Timeout}
	}
	return err
}

type timeoutError struct{ d time.Duration }

func (e timeoutError) Error() string { return "timeout after " + e.d.String() }

func (e timeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

func (p *prober) probeHTTP(ctx context.Context) error {
	desc := p.spec.Describe()
	if p.urlErr != nil {
		return fmt.Errorf("%s: %w", desc, p.urlErr)
	}
	req := (&http.Request{
		Method:     http.MethodGet,
		URL:        p.url,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{"User-Agent": {"lavavisor-health"}},
		Host:       p.url.Host,
	}).WithContext(ctx)
	resp, err := p.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its `Get "url":` prefix would repeat desc
		}
		return fmt.Errorf("%s: %w", desc, err)
	}
	// Read at most bodyLimit and nothing more: an endless body must not
	// hold the check; the Transport drops a connection not read to EOF.
	_, rerr := io.Copy(io.Discard, io.LimitReader(resp.Body, bodyLimit))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode >= 300 && resp.StatusCode < 400 {
			return fmt.Errorf("%s: %d (redirect to %s not followed)", desc, resp.StatusCode, loc)
		}
		return fmt.Errorf("%s: %d", desc, resp.StatusCode)
	}
	if rerr != nil {
		return fmt.Errorf("%s: %d, reading body: %w", desc, resp.StatusCode, rerr)
	}
	return nil
}

func (p *prober) probeTCP(ctx context.Context) error {
	c, err := p.dialer.DialContext(ctx, "tcp", p.spec.TCP)
	if err != nil {
		return err // "dial tcp 127.0.0.1:2220: connect: connection refused"
	}
	c.Close()
	return nil
}

func (p *prober) probeExec(ctx context.Context) error {
	desc := p.spec.Describe()
	if p.run == nil {
		return fmt.Errorf("%s: no way to run programs", desc)
	}
	name := p.spec.Exec[0]
	out, err := p.run(ctx, execOutputLimit, name, p.spec.Exec[1:]...)
	if err == nil {
		return nil
	}
	// The reaper says "<name>: exit code 1"; desc already names it.
	msg := strings.TrimPrefix(err.Error(), name+": ")
	if line := firstLine(out); line != "" {
		return fmt.Errorf("%s: %s: %s", desc, msg, line)
	}
	return fmt.Errorf("%s: %s", desc, msg)
}

// firstLine is the first non-empty line of a check's output, made safe for
// a log line and kept short.
func firstLine(out []byte) string {
	out = bytes.TrimLeft(out, " \t\r\n")
	if i := bytes.IndexByte(out, '\n'); i >= 0 {
		out = out[:i]
	}
	s := strings.TrimSpace(strings.ToValidUTF8(string(out), "\uFFFD"))
	if len(s) > reasonLineLimit {
		cut := reasonLineLimit
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
