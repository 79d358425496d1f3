# syntax=docker/dockerfile:1
# The haul server image that 40-deployment.yaml runs (`haul up`). haul is
# pure Go (SQLite through modernc.org/sqlite, PostgreSQL through pgx), so it
# is built with CGO_ENABLED=0. The base is distroless static: no shell, but
# CA certificates (for PostgreSQL with sslmode=verify-full and remote
# clusters' API servers), /tmp and a non-root user.
#
# Build from the repository root:
#   docker build -f deploy/kubernetes/haul.Dockerfile -t REGISTRY/haul:VERSION .

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS=linux
ARG TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w" -o /out/haul ./cmd/haul

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/haul /haul
USER 65532:65532
EXPOSE 7070
ENTRYPOINT ["/haul"]
