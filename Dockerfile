# syntax=docker/dockerfile:1

# The `migrator` image: the static-stdlib binaries (migrator, migrator-serve) and the shipped migrations on Debian slim.
#
#   docker build -t migrator .
#   docker run --rm -e DATABASE_URL=postgres://user:pass@host:5432/db migrator migrate
#   docker run -d -p 8080:8080 -e DATABASE_URL=… migrator          # `serve`, the daemon (the default CMD)
#
# Tests/MigratorEndToEndTests/ContainerFilesTests.swift parses this file: its command lines must be ones the CLI accepts.

# The toolchain image. Its Debian release must match the runtime stage's (bookworm): the binary links the system
# glibc, libstdc++ and libpq. Override with --build-arg SWIFT_IMAGE=swift:6.3.1-bookworm to pin a patch release.
ARG SWIFT_IMAGE=swift:6.3-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---- build ----------------------------------------------------------------------------------------------------------
FROM ${SWIFT_IMAGE} AS build

# libpq headers for the CLibPQ system library target, found through pkg-config; libpg_query (PostgreSQL's parser,
# for `migrator lint`), linked statically, so the runtime stage needs nothing more.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq-dev libpg-query-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /build

# Dependencies first, in their own layer: it is rebuilt only when the manifest or the pins change, not on every
# source edit. Package.resolved is git-ignored, so it may be absent (the `*` makes it optional); when present its
# versions are used exactly.
COPY Package.swift Package.resolved* ./
RUN swift package resolve $([ -f Package.resolved ] && echo --force-resolved-versions)

COPY Sources ./Sources
# SwiftPM refuses a manifest whose test target folders are missing, even to build one product, so Tests/ is part of
# the context; none of it is compiled here.
COPY Tests ./Tests

# Built by scripts/build-release, the one place that says how (scripts/run and the benchmarks use it too): release,
# static Swift runtime and Foundation, so the runtime stage needs only libpq5 (plus libstdc++6 and libgcc-s1, which
# Debian slim already ships as dependencies of apt). The binaries are copied out of .build so the next stage can take
# them: `migrator`, and `migrator-serve` beside it, which `migrator serve` execs (only the daemon loads its HTTP
# server, SwiftNIO and full Foundation).
COPY scripts/build-release ./scripts/
RUN bin=$(scripts/build-release .build) \
    && install -D -m 0755 "$bin" /staging/migrator \
    && install -D -m 0755 "$bin-serve" /staging/migrator-serve

# ---- runtime --------------------------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime

# libpq5: the client library the binary links; ca-certificates: a CA bundle for managed databases
# (sslmode=verify-full&sslrootcert=/etc/ssl/certs/ca-certificates.crt).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq5 ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid/gid, so that Kubernetes' runAsNonRoot can check it and volume permissions are predictable.
RUN groupadd --system --gid 10001 migrator \
    && useradd --system --uid 10001 --gid migrator --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin migrator

COPY --from=build /staging/migrator /usr/local/bin/migrator
COPY --from=build /staging/migrator-serve /usr/local/bin/migrator-serve
# Owned by root and not writable by the runtime user: the migrations are part of the image, not state.
COPY Migrations /app/Migrations

WORKDIR /app

# Logs as JSON lines for log collectors; the daemon listens on every interface so that the port can be published.
ENV MIGRATOR_MIGRATIONS=/app/Migrations \
    MIGRATOR_HTTP_ADDRESS=0.0.0.0:8080 \
    MIGRATOR_LOG_FORMAT=json

# /healthz, /readyz and /metrics of `migrator serve`.
EXPOSE 8080

USER 10001:10001

# `probe` GETs /readyz on MIGRATOR_HTTP_ADDRESS (0.0.0.0 is reached as 127.0.0.1), so the image needs no curl. Its own
# timeout is 5s, below --timeout here. This check suits `serve`; a container running a one-shot command from this
# image (`migrate`, `status`) exits before it matters, or can be started with --no-healthcheck.
HEALTHCHECK --interval=10s --timeout=10s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/migrator", "probe", "/readyz"]

# Exec form: migrator is PID 1 and receives SIGTERM itself (serve finishes the transaction in progress, then exits 0).
ENTRYPOINT ["/usr/local/bin/migrator"]
CMD ["serve"]
