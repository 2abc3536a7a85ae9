# syntax=docker/dockerfile:1
# pushbridge container image: a release build on Debian 12, run as the distroless "nonroot" user
# (uid/gid 65532) with no shell. The Helm chart in helm/pushbridge runs this image as a sidecar.
#
#   docker build -t ghcr.io/pushbridge/pushbridge:0.1.0 .
#   docker run --rm -v "$PWD/config.yaml:/etc/pushbridge/config.yaml:ro" -p 8443:8443 -p 9090:9090 \
#     ghcr.io/pushbridge/pushbridge:0.1.0

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds; the binary is copied out of the cached target.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin pushbridge \
    && install -D -m 0755 target/release/pushbridge /out/pushbridge

# glibc + libgcc from Debian 12, matching the builder; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/pushbridge /usr/local/bin/pushbridge
USER 65532:65532
# 8443: client TLS listener; 9090: admin (/healthz, /readyz, /metrics).
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/pushbridge"]
CMD ["run", "-c", "/etc/pushbridge/config.yaml"]
