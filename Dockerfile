# Tora in a small image: one static executable and nothing else (FROM scratch).
#   docker build -t tora . && docker run -p 8080:8080 -v tora-data:/data tora
# Stage 1 builds the binary with glibc linked in statically (what deploy/static.sh builds and
# checks in an empty root, the way the final stage runs it); stage 2 is that one file, run as
# nobody, with the database in the /data volume.
FROM rust:1.95-bookworm AS build
# build.rs fetches uPlot for the dashboard from npm (assets/package-lock.json).
RUN apt-get update && apt-get install -y --no-install-recommends npm && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked \
      --target x86_64-unknown-linux-gnu --target-dir /out \
 && mkdir /data-dir

FROM scratch
COPY --from=build /out/x86_64-unknown-linux-gnu/release/tora /tora
COPY --from=build --chown=65534:65534 /data-dir /data
USER 65534:65534
VOLUME /data
EXPOSE 8080
ENV TORA_BIND=0.0.0.0:8080 TORA_DB=/data/tora.db
ENTRYPOINT ["/tora"]
CMD ["serve"]
