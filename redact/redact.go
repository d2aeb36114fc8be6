// Package redact hides credentials in URLs before they are logged or shown.
// Every place that logs, prints or reports a node or download URL goes
// through URL, so that a banner, a status, a metric label or an error can
// never show what another place hides.
package redact

import (
	"net/url"
	"strings"
)

// Mask replaces each hidden value.
const Mask = "xxxxx"

// URL returns s with the password of user:password@ and the values of
// secret-looking query parameters (password, token, key, secret, signature,
// auth, credential) replaced by Mask. A comma-separated list (--node a,b) is
// redacted entry by entry; text that does not parse as a URL still loses
// whatever sits between "://" and the last "@".
func URL(s string) string {
	if strings.Contains(s, ",") {
		parts := strings.Split(s, ",")
		for i, p := range parts {
			parts[i] = one(p)
		}
		return strings.Join(parts, ",")
	}
	return one(s)
}

func one(s string) string {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.Opaque != "" {
		return userinfo(s)
	}
	changed := false
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), Mask)
		} else {
			// A lone user part may be a token (https://TOKEN@host).
			u.User = url.User(Mask)
		}
		changed = true
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			if secretName(k) {
				for i := range q[k] {
					q[k][i] = Mask
				}
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	if !changed {
		return s
	}
	// url.URL.String escapes the mask's nothing; keep it readable.
	return u.String()
}

// userinfo hides what sits between "://" and the last "@" of unparsable text.
func userinfo(s string) string {
	if at := strings.LastIndex(s, "@"); at >= 0 {
		if i := strings.Index(s, "://"); i >= 0 && i < at {
			return s[:i+3] + Mask + s[at:]
		}
	}
	return s
}

// secretName tells a query parameter whose value is a credential.
func secretName(k string) bool {
	k = strings.ToLower(k)
	for _, w := range []string{"pass", "pwd", "token", "secret", "key", "sig", "auth", "credential"} {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}
