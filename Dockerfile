# codeq broker and CLI image. Three stages: `build` compiles the TypeScript to dist/, `deps`
# installs production dependencies only, `runtime` runs the compiled CLI as the unprivileged
# `node` user. `docker build -t codeq .`, then `docker run codeq serve` (the default command),
# `docker run codeq worker …` or `docker run codeq streams show`. compose.yaml builds it.
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
# The directories tsconfig.build.json includes (emitted as dist/src, dist/projections and
# dist/streams), and test/support: `codeq bench e2e` imports its OTLP receiver lazily, and the
# compiler needs every file the sources import, lazily or not.
COPY src ./src
COPY projections ./projections
COPY streams ./streams
COPY test/support ./test/support
RUN npm run build

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

FROM ${NODE_IMAGE} AS runtime
WORKDIR /app
ENV NODE_ENV=production
# package.json is needed at run time: its "type": "module" makes Node load dist/ as ES modules.
COPY package.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# Files stay owned by root and read-only to the process; it runs as the image's `node` user (uid 1000).
USER node
EXPOSE 8080
# Liveness of `codeq serve`. Slim images have no curl; Node 20 has a global fetch. Other commands
# (e.g. `worker`) serve no HTTP: disable or replace this check where they run (compose.yaml does).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.CODEQ_HTTP_PORT || '8080') + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Node as PID 1: `codeq serve` handles SIGTERM/SIGINT itself (drains HTTP and consumers, flushes spans).
ENTRYPOINT ["node", "dist/src/cli/main.js"]
CMD ["serve"]
