# One image for the whole demo: cproxy, sproxy, and a telnetd to stand behind sproxy.
FROM node:20-bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends inetutils-telnetd telnet socat iproute2 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/eternal-tcp
COPY package.json package-lock.json tsconfig.json ./
COPY bin ./bin
COPY common ./common
COPY cproxy ./cproxy
COPY sproxy ./sproxy
COPY demo ./demo
# `npm ci` runs the build (the prepare script); the dev dependencies are then dropped.
RUN npm ci --no-audit --no-fund && npm prune --omit=dev

ENV PATH="/opt/eternal-tcp/bin:${PATH}"
CMD ["cproxy", "--help"]
