package redact

import "testing"

func TestURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://user:pass@host:26657", "https://user:xxxxx@host:26657"},
		{"tcp://127.0.0.1:26657", "tcp://127.0.0.1:26657"},
		{"https://TOKEN@host/x", "https://xxxxx@host/x"},
		{"https://host/x?password=pw&v=1", "https://host/x?password=xxxxx&v=1"},
		{"https://host/x?X-Amz-Signature=abc&api_key=k&token=t", "https://host/x?X-Amz-Signature=xxxxx&api_key=xxxxx&token=xxxxx"},
		{"https://a:b@h1,https://h2?pass=p", "https://a:xxxxx@h1,https://h2?pass=xxxxx"},
		{"https://u:p%zz@host", "https://xxxxx@host"}, // does not parse
		{"file:///etc/versions.yml", "file:///etc/versions.yml"},
		{"https://github.com/lavanet/lava/releases/download/v{version}/lavap-v{version}-{os}-{arch}", "https://github.com/lavanet/lava/releases/download/v{version}/lavap-v{version}-{os}-{arch}"},
		{"", ""},
	} {
		if got := URL(tc.in); got != tc.want {
			t.Errorf("URL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
