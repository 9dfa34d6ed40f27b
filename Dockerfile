# Swarmer's container image: built in a Rust image, run from a small
# Debian one as a non-root user. The same image runs as master or worker:
#   docker run -p 8089:8089 -p 5557:5557 swarmer -f /plan/plan.lua --master
#   docker run swarmer --worker -f - --master-host MASTER
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin swarmer \
 && strip target/release/swarmer

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /home/swarmer --create-home swarmer
COPY --from=build /src/target/release/swarmer /usr/local/bin/swarmer
USER 10001
WORKDIR /home/swarmer
# 8089: web UI and API; 5557: the cluster port (master only).
EXPOSE 8089 5557
ENTRYPOINT ["swarmer"]
CMD ["--help"]
