package config

// SampleConfig is the commented config.yml that `lavavisor init` writes. Every
// active line holds the default, so that the file documents what LavaVisor does
// when a key is left out; a test keeps it in step with Default.
func SampleConfig() string {
	return `# LavaVisor configuration. Durations are Go durations (15s, 1m30s, 10m).
# Flags and LAVAVISOR_* environment variables override these values.

# Chain id to expect from the node, e.g. lava-mainnet-1. "" checks nothing.
chain-id: ""
# CometBFT RPC endpoint(s): tcp://, http:// or https://, several separated by
# commas (tried in order). Or file:///absolute/path/versions.yml, a static
# version source with provider_min, provider_target, consumer_min and
# consumer_target, re-read every poll.
node: tcp://127.0.0.1:26657
# Optional: query the chain over gRPC (host:port) instead of RPC.
grpc-addr: ""
# Plain gRPC instead of TLS.
grpc-insecure: false
# Time allowed for one chain request.
request-timeout: 10s
# Largest chain response body accepted.
max-response-size: 4MiB
# How often the chain is polled. 0s: the chain's average block time.
poll-interval: 0s
# Download a release that is not in the releases folder yet.
auto-download: false
# Read the version proposals in voting and fetch the release each would need
# before the vote ends, so that the swap needs no download (default: on when
# auto-download is on; with auto-download off, true only warns). auto | true | false
prefetch: auto
download:
  # Where releases come from; {version}, {os} and {arch} are filled in.
  url: https://github.com/lavanet/lava/releases/download/v{version}/lavap-v{version}-{os}-{arch}
  # The sha256 list of each release. "" means no checksum source.
  checksums: https://github.com/lavanet/lava/releases/download/v{version}/sha256sum.txt
  # No verified sha256, no install.
  require-checksum: true
  # Time allowed for one whole download, and for connecting.
  timeout: 10m
  connect-timeout: 30s
  # Largest binary accepted.
  max-size: 512MiB
# Folder holding one v<X.Y.Z>/ folder per release. "": upgrades/ in the
# LavaVisor home. May be a volume shared by several instances; a relative path
# is relative to this file's folder.
releases-dir: ""
# Releases kept when old ones are pruned.
keep-releases: 3
# Link to the current lavap in the system path: auto (the lavap found on PATH,
# else ~/go/bin/lavap), none, or an absolute path.
link: auto
# How a service is stopped: this signal, then SIGKILL after stop-timeout.
# lavap shuts down cleanly on SIGINT and is killed outright by SIGTERM.
stop-timeout: 15s
stop-signal: SIGINT
# A (re)started service counts as up after this long; a service on a new
# release that exits sooner rolls the upgrade back.
min-uptime: 10s
# When a service that ended is started again: always, on-failure or never.
restart: always
# target: follow the chain's target version; min: move only when below the minimum.
upgrade: target
# Restart services one at a time on upgrade.
rolling: true
# A release (X.Y.Z) to hold on to whatever the chain says. "": follow the chain.
pin: ""
# A release marked bad is tried again after this long.
bad-release-retry: 1h
# An upgrade that only follows the target (the running release is at or above
# every minimum) waits for this daily window, "HH:MM-HH:MM" in UTC (may wrap
# midnight, as "22:00-02:00"). "": any time. A minimum that rises goes at once.
upgrade-window: ""
# Such an upgrade also waits a delay in [0, upgrade-spread), fixed for this
# instance (from its host name and home), so that a fleet moves one by one.
# Shorter than the window. 0s: no delay.
upgrade-spread: 0s
# Also write each service's lines, raw, to <logs-dir>/<name>.log, rotated at
# log-max-size (whole MiB) keeping log-max-files compressed files. "": none.
# A relative path is relative to this file's folder.
logs-dir: ""
log-max-size: 100MiB
log-max-files: 5

# The supervised processes. Add one with:
#   lavavisor create-service provider provider.yml --from my-key --geolocation 1
# or by hand: replace "services: []" with "services:" and follow this example.
services: []
#  - name: provider-eth          # unique: lowercase letters, digits, dashes
#    # args are the arguments after the lavap binary; the metrics listener
#    # serves the health endpoint below
#    args: [rpcprovider, provider.yml, --from, my-key, --geolocation, "1",
#           --metrics-listen-address, "127.0.0.1:7776"]
#    role: provider              # provider or consumer; default from args[0]
#    env: {LAVA_X: "1"}          # added to the inherited environment
#    dir: services/provider-eth  # working directory: lavap finds provider.yml
#                                # here and keeps its reward database here;
#                                # relative to this file's folder
#    stop-timeout: 30s           # overrides the value above, as can
#    stop-signal: SIGINT         # stop-signal, min-uptime and restart
#    restart: on-failure
#    keyring-password: false     # feed the keyring password to its stdin
#    health:                     # optional: how to ask it whether it serves
#      # A provider serves /metrics/<SPEC>/<api-interface>/health for each
#      # endpoint (404 until the endpoint passed its start-up checks), a
#      # consumer /metrics/overall-health. 2xx is healthy.
#      http: http://127.0.0.1:7776/metrics/ETH1/jsonrpc/health
#      # or tcp: 127.0.0.1:2220 (a connection is accepted), or
#      # exec: [/usr/local/bin/check-provider, eth] (exit 0; argv, no shell)
#      insecure-tls: false       # true: accept a self-signed https:// endpoint
#      interval: 5s              # between checks
#      start-interval: 1s        # between checks during start-period
#      timeout: 2s               # one check
#      start-period: 90s         # a (re)started service has this long to become
#                                # healthy; a new release that is not rolls back
#      failures: 3               # consecutive failures that make it unhealthy
#      restart-after: 0s         # >0: restart it when unhealthy this long
#  - name: exporter              # any other program: command instead of lavap;
#    command: bin/exporter       # no version handling, upgrades leave it alone
#    args: [--port, "9300"]
`
}
