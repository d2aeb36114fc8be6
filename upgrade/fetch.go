package upgrade

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/lavavisor/lavavisor/chain"
	"github.com/lavavisor/lavavisor/redact"
)

// Defaults of the download settings (SPEC §3).
const (
	DefaultURL            = "https://github.com/lavanet/lava/releases/download/v{version}/lavap-v{version}-{os}-{arch}"
	DefaultChecksumsURL   = "https://github.com/lavanet/lava/releases/download/v{version}/sha256sum.txt"
	DefaultTimeout        = 10 * time.Minute
	DefaultConnectTimeout = 30 * time.Second
	DefaultMaxSize        = 512 << 20

	// maxChecksumsSize bounds the checksums file: it lists a few dozen lines.
	maxChecksumsSize = 1 << 20
	copyBufferSize   = 256 << 10
)

// Fetcher downloads a release into a Store (SPEC §6.4).
type Fetcher struct {
	// URL and Checksums are templates with {version} (X.Y.Z), {os} and {arch}
	// (Go's names: linux, amd64). URL "" is DefaultURL; Checksums "" means none.
	URL, Checksums  string
	RequireChecksum bool
	Timeout         time.Duration // one whole download; 0: DefaultTimeout
	ConnectTimeout  time.Duration // dial, TLS handshake, response headers; 0: DefaultConnectTimeout
	MaxSize         int64         // 0: DefaultMaxSize
	// Client is used as is when set; otherwise one is built that honours
	// HTTPS_PROXY and the timeouts above.
	Client *http.Client
	Log    *logrus.Entry
	// Progress, when set, receives a progress bar if it is a terminal; otherwise
	// progress is logged every few seconds.
	Progress io.Writer
	// LockWait bounds the wait for another instance's download into the same
	// releases folder; 0: as long as ctx allows.
	LockWait time.Duration
}

// AssetURL is the download URL of release v for this platform.
func (f *Fetcher) AssetURL(v chain.Version) string { return expand(f.urlTemplate(), v) }

// ChecksumsURL is the URL of release v's checksums file, "" when none is set.
func (f *Fetcher) ChecksumsURL(v chain.Version) string {
	if f.Checksums == "" {
		return ""
	}
	return expand(f.Checksums, v)
}

// AssetName is the file name the checksums file lists the asset under: the last
// element of the asset URL's path.
func (f *Fetcher) AssetName(v chain.Version) (string, error) {
	raw := f.AssetURL(v)
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("download URL %q: %w", redact.URL(raw), err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("download URL %q: want http:// or https://", redact.URL(raw))
	}
	name := path.Base(u.Path)
	if name == "." || name == "/" {
		return "", fmt.Errorf("download URL %q names no file", redact.URL(raw))
	}
	return name, nil
}

func expand(tmpl string, v chain.Version) string {
	// v prints as digits and dots only, so it cannot alter the URL's structure.
	return strings.NewReplacer("{version}", v.String(), "{os}", runtime.GOOS, "{arch}", runtime.GOARCH).Replace(tmpl)
}

// Fetch makes release v available in s: under <Dir>/.lock it returns the
// release if it is already there and verifies (another instance may have just
// fetched it), else downloads, verifies and installs it. A failed fetch leaves
// nothing behind and changes nothing in s.
func (f *Fetcher) Fetch(ctx context.Context, s *Store, v chain.Version) (Manifest, error) {
	m, err := f.fetch(ctx, s, v)
	if err != nil {
		return Manifest{}, fmt.Errorf("fetch lavap %s: %w", v.Tag(), err)
	}
	return m, nil
}

func (f *Fetcher) fetch(ctx context.Context, s *Store, v chain.Version) (Manifest, error) {
	if v.IsZero() {
		return Manifest{}, errors.New("no version given")
	}
	name, err := f.AssetName(v)
	if err != nil {
		return Manifest{}, err
	}
	if err := ensureDir(s.Dir); err != nil {
		return Manifest{}, err
	}
	lock, err := f.lock(ctx, s)
	if err != nil {
		return Manifest{}, err
	}
	defer lock.Unlock()
	log := f.log().WithField("release", v.Tag())
	if err := s.CleanTemp(); err != nil {
		log.WithError(err).Warn("cannot remove leftovers of an interrupted download")
	}

	replace := false
	if _, err := os.Lstat(s.ReleaseDir(v)); err == nil {
		m, err := s.Verify(v)
		if err == nil {
			log.Info("release already in the releases folder")
			return m, nil
		}
		log.WithError(err).Warn("release folder is not usable; downloading the release again (the folder will be kept aside)")
		replace = true
	}

	want, err := f.checksum(ctx, v, name)
	if err != nil {
		return Manifest{}, err
	}
	asset := f.AssetURL(v)
	log.WithField("url", redact.URL(asset)).Info("downloading release")
	tmpBin, sum, err := f.download(ctx, s.Dir, v, asset)
	if err != nil {
		return Manifest{}, err
	}
	defer os.Remove(tmpBin) // gone already once installed
	if want != "" && sum != want {
		return Manifest{}, fmt.Errorf("sha256 mismatch for %s: downloaded %s, checksums file says %s", name, sum, want)
	}

	m := Manifest{
		Version:         v.String(),
		SHA256:          sum,
		Source:          SourceURL,
		URL:             redact.URL(asset),
		ReportedVersion: s.reportedVersion(ctx, tmpBin),
		FetchedAt:       time.Now().UTC(),
	}
	switch m.ReportedVersion {
	case v.String():
	case "":
		log.Warn("the downloaded lavap has no working `version` command (old releases have none); installing it anyway, its tag is what counts")
	default:
		log.WithField("reported_version", m.ReportedVersion).Warn("the downloaded lavap reports another version than its tag (real releases lag); installing it anyway, its tag is what counts")
	}
	if err := install(s, v, tmpBin, m, replace); err != nil {
		return Manifest{}, err
	}
	log.WithFields(logrus.Fields{"sha256": sum, "verified": want != "", "url": redact.URL(asset)}).Info("release installed")
	return m, nil
}

// install moves the verified binary into a temporary release folder with its
// manifest, then renames that folder into place, so a crash never leaves a half
// release under the final name. A broken folder already there (replace) is
// renamed aside, never deleted: it may be the operator's.
func install(s *Store, v chain.Version, tmpBin string, m Manifest, replace bool) (err error) {
	tmpDir, err := os.MkdirTemp(s.Dir, tempPrefix+v.Tag()+"-*")
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmpDir)
			err = fmt.Errorf("install into %s: %w", s.ReleaseDir(v), err)
		}
	}()
	if err = os.Chmod(tmpDir, 0o755); err != nil {
		return err
	}
	if err = os.Rename(tmpBin, filepath.Join(tmpDir, BinaryName)); err != nil {
		return err
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	// Also makes the rename of the binary into tmpDir durable (it syncs tmpDir).
	if err = WriteFileAtomic(filepath.Join(tmpDir, ManifestName), append(data, '\n'), 0o644); err != nil {
		return err
	}
	final := s.ReleaseDir(v)
	aside := ""
	if replace {
		aside = final + ".rejected-" + time.Now().UTC().Format("20060102T150405Z")
		if err = os.Rename(final, aside); err != nil {
			return fmt.Errorf("keep the unusable folder aside: %w", err)
		}
		s.log().WithFields(logrus.Fields{"release": v.Tag(), "kept_as": aside}).Warn("unusable release folder kept aside")
	}
	if err = os.Rename(tmpDir, final); err != nil {
		if aside != "" {
			_ = os.Rename(aside, final)
		}
		return err
	}
	return syncDir(s.Dir)
}

// lock takes <Dir>/.lock, saying so when another instance holds it.
func (f *Fetcher) lock(ctx context.Context, s *Store) (*Lock, error) {
	l, err := TryLock(s.lockPath())
	if err == nil || !errors.Is(err, ErrLocked) {
		return l, err
	}
	f.log().WithError(err).Info("waiting for the releases lock: another instance is downloading")
	if f.LockWait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.LockWait)
		defer cancel()
	}
	return WaitLock(ctx, s.lockPath())
}

// checksum returns the expected sha256 of the asset, or "" when there is none
// and download.require-checksum allows that.
func (f *Fetcher) checksum(ctx context.Context, v chain.Version, name string) (string, error) {
	u := f.ChecksumsURL(v)
	if u == "" {
		return f.unverified(name, "no checksums URL is configured")
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout())
	defer cancel()
	body, err := f.getSmall(ctx, u, maxChecksumsSize)
	var se *statusError
	switch {
	case errors.As(err, &se) && se.code == http.StatusNotFound:
		return f.unverified(name, fmt.Sprintf("no checksums file at %s (404)", redact.URL(u)))
	case err != nil:
		return f.unverified(name, fmt.Sprintf("cannot read the checksums file: %v", err))
	}
	sum, err := findChecksum(body, name)
	if err != nil {
		return "", fmt.Errorf("checksums file %s: %w", redact.URL(u), err)
	}
	if sum == "" {
		return f.unverified(name, fmt.Sprintf("no checksum for %s in %s", name, redact.URL(u)))
	}
	return sum, nil
}

func (f *Fetcher) unverified(name, reason string) (string, error) {
	if f.RequireChecksum {
		return "", fmt.Errorf("%s: refusing an unverifiable binary (download.require-checksum is true)", reason)
	}
	f.log().WithField("asset", name).Warn("INSTALLING AN UNVERIFIED BINARY: " + reason + "; set download.require-checksum: true to refuse this")
	return "", nil
}

// findChecksum reads sha256sum output ("<64 hex>  <name>" or "<64 hex> *<name>")
// and returns the sum listed for name (compared by base name, since the file
// lists every binary and platform), "" when none is. Malformed lines are
// skipped; two different sums for one name are an error.
func findChecksum(body []byte, name string) (string, error) {
	found := ""
	for _, line := range strings.Split(string(body), "\n") {
		line = strings.TrimRight(line, "\r")
		if len(line) < 66 || (line[64] != ' ') || (line[65] != ' ' && line[65] != '*') {
			continue
		}
		sum := strings.ToLower(line[:64])
		if _, err := hex.DecodeString(sum); err != nil {
			continue
		}
		// The last element of the listed path, taken as written: path.Base would
		// strip a trailing slash and let a line for a folder stand for the asset.
		listed := line[66:]
		if i := strings.LastIndexByte(listed, '/'); i >= 0 {
			listed = listed[i+1:]
		}
		if listed != name {
			continue
		}
		if found != "" && found != sum {
			return "", fmt.Errorf("%s is listed with two different sums (%s, %s)", name, found, sum)
		}
		found = sum
	}
	return found, nil
}

// download streams url into a temporary file in dir, hashing on the way, and
// returns the file (synced, mode 0755) and its sha256. On error nothing is left.
func (f *Fetcher) download(ctx context.Context, dir string, v chain.Version, rawURL string) (tmpPath, sum string, err error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout())
	defer cancel()
	client := f.client()
	defer client.CloseIdleConnections()
	resp, err := f.get(ctx, client, rawURL)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	max := f.maxSize()
	if resp.ContentLength > max {
		return "", "", fmt.Errorf("download %s: %d bytes, above download.max-size (%d bytes)", redact.URL(rawURL), resp.ContentLength, max)
	}
	if err := notHTML(resp.Header.Get("Content-Type")); err != nil {
		return "", "", fmt.Errorf("download %s: %w", redact.URL(rawURL), err)
	}
	body := bufio.NewReaderSize(resp.Body, 64<<10)
	head, _ := body.Peek(16) // a short or failed read shows again in the copy
	if bytes.HasPrefix(bytes.TrimLeft(head, " \t\r\n"), []byte("<")) {
		return "", "", fmt.Errorf("download %s: not a binary: the server sent a page starting with %q", redact.URL(rawURL), head)
	}

	file, err := os.CreateTemp(dir, tempPrefix+BinaryName+"-"+v.Tag()+"-*")
	if err != nil {
		return "", "", fmt.Errorf("download into %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			file.Close()
			os.Remove(file.Name())
		}
	}()
	h := sha256.New()
	var w io.Writer = io.MultiWriter(file, h)
	prog := newProgress(f.Progress, f.log(), v.Tag(), resp.ContentLength)
	if prog != nil {
		w = io.MultiWriter(file, h, prog)
	}
	n, err := io.CopyBuffer(w, io.LimitReader(body, max+1), make([]byte, copyBufferSize))
	prog.finish()
	switch {
	case err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return "", "", fmt.Errorf("download %s: not done within download.timeout (%s), %d bytes read: %w", redact.URL(rawURL), f.timeout(), n, err)
	case err != nil:
		return "", "", fmt.Errorf("download %s: %d bytes read: %w", redact.URL(rawURL), n, err)
	case n > max:
		return "", "", fmt.Errorf("download %s: more than download.max-size (%d bytes)", redact.URL(rawURL), max)
	case n == 0:
		return "", "", fmt.Errorf("download %s: empty answer", redact.URL(rawURL))
	}
	if err = file.Chmod(0o755); err != nil {
		return "", "", fmt.Errorf("download into %s: %w", dir, err)
	}
	if err = file.Sync(); err != nil {
		return "", "", fmt.Errorf("download into %s: %w", dir, err)
	}
	if err = file.Close(); err != nil {
		return "", "", fmt.Errorf("download into %s: %w", dir, err)
	}
	return file.Name(), hex.EncodeToString(h.Sum(nil)), nil
}

// statusError is a non-2xx answer.
type statusError struct {
	url    string
	code   int
	status string
}

func (e *statusError) Error() string {
	if e.code == http.StatusNotFound {
		return fmt.Sprintf("%s: %s (no such release file for this version and platform?)", e.url, e.status)
	}
	return fmt.Sprintf("%s: %s", e.url, e.status)
}

// get sends a GET and checks the status; the caller closes the body.
func (f *Fetcher) get(ctx context.Context, client *http.Client, rawURL string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", redact.URL(rawURL), err)
	}
	req.Header.Set("User-Agent", "lavavisor")
	resp, err := client.Do(req)
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		err = ue.Err // its text repeats the URL, unredacted
	}
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", redact.URL(rawURL), err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		resp.Body.Close()
		return nil, fmt.Errorf("download %w", &statusError{url: redact.URL(rawURL), code: resp.StatusCode, status: resp.Status})
	}
	return resp, nil
}

// getSmall reads a whole small answer, refusing one above limit bytes.
func (f *Fetcher) getSmall(ctx context.Context, rawURL string, limit int64) ([]byte, error) {
	client := f.client()
	defer client.CloseIdleConnections()
	resp, err := f.get(ctx, client, rawURL)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", redact.URL(rawURL), err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", redact.URL(rawURL), limit)
	}
	return body, nil
}

func notHTML(contentType string) error {
	if contentType == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err == nil && (mt == "text/html" || mt == "application/xhtml+xml") {
		return fmt.Errorf("not a binary: the server sent an HTML page (Content-Type %s)", contentType)
	}
	return nil
}

func (f *Fetcher) client() *http.Client {
	if f.Client != nil {
		return f.Client
	}
	ct := f.connectTimeout()
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: ct, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   ct,
		ResponseHeaderTimeout: ct,
		ForceAttemptHTTP2:     true,
		IdleConnTimeout:       30 * time.Second,
	}}
}

// ensureDir makes the releases folder when its parent exists: a default
// <home>/upgrades is created on first use, but a mistyped shared volume path
// fails instead of silently becoming a new tree.
func ensureDir(dir string) error {
	err := os.Mkdir(dir, 0o755)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("releases folder: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("releases folder: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("releases folder %s is not a folder", dir)
	}
	return nil
}

func (f *Fetcher) urlTemplate() string {
	if f.URL == "" {
		return DefaultURL
	}
	return f.URL
}

func (f *Fetcher) timeout() time.Duration {
	if f.Timeout > 0 {
		return f.Timeout
	}
	return DefaultTimeout
}

func (f *Fetcher) connectTimeout() time.Duration {
	if f.ConnectTimeout > 0 {
		return f.ConnectTimeout
	}
	return DefaultConnectTimeout
}

func (f *Fetcher) maxSize() int64 {
	if f.MaxSize > 0 {
		return f.MaxSize
	}
	return DefaultMaxSize
}

func (f *Fetcher) log() *logrus.Entry {
	if f.Log != nil {
		return f.Log
	}
	return discardLog()
}
