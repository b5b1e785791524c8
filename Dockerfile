# syntax=docker/dockerfile:1
# The operator image: `docker build -t <registry>/freshteam-operator:0.1.0 .`
# The binary is self-contained (rustls, no OpenSSL); the runtime image only needs glibc.

FROM rust:1-bookworm AS builder
WORKDIR /build

# Dependencies first, built against a dummy crate with the real manifest and lockfile: this
# layer is rebuilt only when Cargo.toml or Cargo.lock change, not on every source edit.
# Only the operator is built: the workspace's other crate, the Freshteam simulator (for
# the demo and the tests), needs its manifest here and an empty crate, never its code.
COPY Cargo.toml Cargo.lock ./
COPY simulator/Cargo.toml ./simulator/
RUN mkdir -p src/bin benches simulator/src \
 && echo 'fn main() {}' > src/main.rs \
 && echo 'fn main() {}' > src/bin/kubectl-freshteam.rs \
 && touch src/lib.rs simulator/src/lib.rs \
 && echo 'fn main() {}' > simulator/src/main.rs \
 && echo 'fn main() {}' > benches/reconcile_scale.rs \
 && echo 'fn main() {}' > benches/plan.rs \
 && cargo build --release --locked -p freshteam-operator --bin freshteam-operator \
 && rm -rf src benches

# The real source. COPY keeps the files' modification times, which can be older than the
# dummy build's outputs: touch them so cargo rebuilds the crate itself.
COPY src ./src
COPY benches ./benches
RUN touch src/main.rs src/lib.rs src/bin/kubectl-freshteam.rs \
 && cargo build --release --locked -p freshteam-operator --bin freshteam-operator \
 && cp target/release/freshteam-operator /freshteam-operator

# Distroless: no shell or package manager; the :nonroot variant's user is 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="freshteam-operator" \
      org.opencontainers.image.description="Provisions SCIM 2.0 rewards-platform members from a Freshteam HR directory" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /freshteam-operator /freshteam-operator
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
# /metrics, /healthz, /readyz
EXPOSE 8080
ENTRYPOINT ["/freshteam-operator"]
CMD ["run"]
