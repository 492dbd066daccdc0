# spoki-sync as a container image: a build stage with the Rust toolchain, and a small
# runtime stage holding only the binary, CA certificates and the example configuration.
#   docker build -t spoki-sync .
#   docker run -d --name spoki-sync \
#     -e SPOKI_SYNC__SPOKI__API_KEY=... -e SPOKI_SYNC__ADMIN__TOKEN=... \
#     -v spoki-db:/var/lib/spoki-sync/db -v /srv/crm/inbox:/var/lib/spoki-sync/inbox \
#     -p 127.0.0.1:8780:8780 -p 127.0.0.1:8781:8781 spoki-sync
# The daemon runs as PID 1 (exec form, no shell): `docker stop` sends it SIGTERM, it drains
# within 10 s and exits 0. It starts no child processes, so there is nothing to reap.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
# The simulator is left out of the image (`--no-default-features`): `sim` and `demo` are for
# trying the daemon, not for production.
RUN cargo build --release --locked --no-default-features \
 && install -m 0755 target/release/spoki-sync /usr/local/bin/spoki-sync

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/spoki-sync --shell /usr/sbin/nologin spoki-sync \
 && install -d -o spoki-sync -g spoki-sync -m 0750 /var/lib/spoki-sync /var/lib/spoki-sync/db /var/lib/spoki-sync/inbox
COPY --from=build /usr/local/bin/spoki-sync /usr/bin/spoki-sync
COPY examples/config.toml /etc/spoki-sync/config.toml
# Secrets come from the environment (SPOKI_SYNC__SPOKI__API_KEY, SPOKI_SYNC__ADMIN__TOKEN,
# optionally SPOKI_SYNC__WEBHOOKS__SECRET and ..._SPOKI_SECRET). The listeners bind every
# interface inside the container; publish them on loopback, as above, unless a proxy fronts
# them.
ENV SPOKI_SYNC_CONFIG=/etc/spoki-sync/config.toml \
    SPOKI_SYNC__STORAGE__DATABASE=/var/lib/spoki-sync/db/spoki-sync.db \
    SPOKI_SYNC__CSV__INBOX=/var/lib/spoki-sync/inbox \
    SPOKI_SYNC__ADMIN__LISTEN=0.0.0.0:8780 \
    SPOKI_SYNC__WEBHOOKS__LISTEN=0.0.0.0:8781 \
    SPOKI_SYNC__LOG__FORMAT=json
# The database (and its WAL and id file) and the inbox outlive the container.
VOLUME ["/var/lib/spoki-sync/db", "/var/lib/spoki-sync/inbox"]
USER spoki-sync
WORKDIR /var/lib/spoki-sync
EXPOSE 8780 8781
STOPSIGNAL SIGTERM
# check-config: the configuration, the secrets, and that the database's folder and the inbox
# are writable.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
    CMD ["/usr/bin/spoki-sync", "check-config"]
ENTRYPOINT ["/usr/bin/spoki-sync"]
CMD ["run"]
