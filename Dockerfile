# syntax=docker/dockerfile:1
#
# remusd container image: a build stage with the toolchain the native addons
# need (lz4 is compiled by node-gyp; classic-level and bufferutil fall back to
# a compile where no prebuilt binary fits the platform), then a slim runtime
# stage with production dependencies only, run as an unprivileged user.
#
#   docker build -t remusd:0.1.0 .
#   docker run --rm remusd:0.1.0 backup --help
#
# The build and runtime stages must use the same Node.js release: the native
# addons are compiled against the build stage's Node ABI.
# test/deploy/dockerfile.test.ts runs this stage's COPY and RUN steps outside
# Docker in a clean copy of the repository and starts the result.

ARG NODE_VERSION=22.22.0

FROM node:${NODE_VERSION}-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json binding.gyp ./
COPY native ./native
# Every dependency (TypeScript included) for the build. Install scripts must
# run: lz4, classic-level and bufferutil are native (package.json allowScripts),
# and remusd's own install script builds the TAP binding (build/Release/tap.node).
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npm run build && chmod 0755 dist/src/cli/*.js
# Then production dependencies only; the native addons are compiled again here
# and travel to the runtime stage inside node_modules.
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --no-audit --no-fund

FROM node:${NODE_VERSION}-bookworm-slim AS runtime
ARG REMUSD_VERSION=0.1.0
ARG VCS_REF=unknown
ARG BUILD_DATE=unknown
LABEL org.opencontainers.image.title="remusd" \
      org.opencontainers.image.description="High-availability replication daemon: Remus-style checkpointing of a simulated domain to a backup, with output commit and failover" \
      org.opencontainers.image.version="${REMUSD_VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="remusd" \
      org.opencontainers.image.documentation="deploy/README.md" \
      org.opencontainers.image.base.name="node:${NODE_VERSION}-bookworm-slim"
# In a container the control API must be reachable from outside the container's
# network namespace (healthchecks, Prometheus), so it listens on all addresses;
# publish it only where it is needed. The healthcheck reads REMUSD_CONTROL.
ENV NODE_ENV=production \
    REMUSD_DATA_DIR=/var/lib/remusd \
    REMUSD_CONTROL=0.0.0.0:7781
RUN groupadd --system --gid 10001 remusd \
 && useradd --system --uid 10001 --gid remusd --home-dir /var/lib/remusd --no-create-home \
      --shell /usr/sbin/nologin remusd \
 && mkdir -p /var/lib/remusd \
 && chown remusd:remusd /var/lib/remusd \
 && chmod 0750 /var/lib/remusd
WORKDIR /app
# The application files stay owned by root: the daemon can write only its data volume.
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
COPY --from=build /src/build/Release/tap.node ./build/Release/tap.node
COPY LICENSE ./LICENSE
COPY deploy/docker/healthcheck.mjs ./healthcheck.mjs
RUN ln -s /app/dist/src/cli/remusd.js /usr/local/bin/remusd \
 && ln -s /app/dist/src/cli/remusctl.js /usr/local/bin/remusctl
USER 10001:10001
VOLUME ["/var/lib/remusd"]
# 7780 replication (WebSocket), 7781 control API (HTTP), 7790 vswitch (UDP).
EXPOSE 7780/tcp 7781/tcp 7790/udp
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "/app/healthcheck.mjs"]
ENTRYPOINT ["node", "/app/dist/src/cli/remusd.js"]
CMD ["--help"]
