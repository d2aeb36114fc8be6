# syntax=docker/dockerfile:1
#
# LavaVisor image: lavavisor as PID 1, supervising lavap in the same container.
#   docker build --build-arg VERSION=1.2.3 -t lavavisor .
# README.md (Running LavaVisor in containers) explains how to run it; packaging_test.go checks this file
# against the real command-line parser.

# Build stage: a static binary (CGO_ENABLED=0), without local paths in it
# (-trimpath) or debug symbols (-s -w), and with its version stamped in.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/lavavisor .

# Runtime stage: debian:bookworm-slim rather than distroless/static. LavaVisor
# itself is static, but it runs the lavap binaries it downloads from Lava's
# releases, and nothing promises those are static: debian-slim has the glibc a
# dynamically linked lavap needs. It also has a shell, which an operator needs
# to import a key into the keyring (`docker exec -it ... lavap keys add`).
# ca-certificates: releases are downloaded over HTTPS.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed uid/gid 1000, so that the Kubernetes securityContext (runAsUser,
# fsGroup) can name it. /home/lava is the LavaVisor home (.lavavisor/) and
# lavap's (~/.lava keyring, .storage reward database, provider.yml). /releases
# is made here, owned by lava, because Docker copies a folder's owner into a
# new named volume mounted on it: a shared releases volume is then writable.
RUN groupadd --gid 1000 lava \
    && useradd --uid 1000 --gid 1000 --home-dir /home/lava --create-home --shell /bin/bash lava \
    && mkdir -p /releases \
    && chown lava:lava /home/lava /releases

COPY --from=build /out/lavavisor /usr/local/bin/lavavisor

# HOME is set, not left to the passwd entry, so that lavap's --home (~/.lava)
# stays in the volume even under `docker run --user <another uid>`.
ENV HOME=/home/lava \
    LAVAVISOR_DIRECTORY=/home/lava
USER lava:lava
# lavap finds its config file (provider.yml) by name in its working directory,
# or in ./config: mount it at /home/lava/config/provider.yml.
WORKDIR /home/lava
VOLUME ["/home/lava"]

# Docker and Kubernetes stop a container with SIGTERM. LavaVisor takes it as a
# graceful stop and sends each service its own stop-signal (SIGINT for lavap,
# which SIGTERM would kill without cleanup), waits stop-timeout (15s by
# default), then SIGKILLs. Give the container a longer stop grace period.
STOPSIGNAL SIGTERM

# Exec form: lavavisor is PID 1 itself, no shell in between and no tini.
# It is correct as PID 1: it reaps every orphan (one waiter for all children,
# so no exit status of a service is stolen) and it handles SIGTERM and SIGINT
# itself, which a PID 1 without handlers would ignore.
ENTRYPOINT ["/usr/local/bin/lavavisor"]
# The services of /home/lava/.lavavisor/config.yml. For one lavap per
# container, give `pod -- lavap rpcprovider provider.yml ...` instead
# (docker-compose.yml, deploy/k8s/).
CMD ["start"]
