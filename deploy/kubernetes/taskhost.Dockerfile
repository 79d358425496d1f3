# syntax=docker/dockerfile:1
# The taskhost image: nothing but the static haul-taskhost binary. Worker
# pods run it as an init container that copies the binary into an emptyDir
# (`/haul-taskhost --install /haul/bin/haul-taskhost`); the worker container
# then runs the user's own image with /haul/bin/haul-taskhost as its command.
# The binary is built with CGO_ENABLED=0, so it needs no libc and runs in any
# Linux image of the same architecture: Debian, Alpine, distroless, scratch.
#
# Build from the repository root:
#   docker build -f deploy/kubernetes/taskhost.Dockerfile -t REGISTRY/taskhost:VERSION .
# Several architectures: docker buildx build --platform linux/amd64,linux/arm64 ...

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS=linux
ARG TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w" -o /out/haul-taskhost ./cmd/haul-taskhost

FROM scratch
COPY --from=build /out/haul-taskhost /haul-taskhost
# Any user may run it; the init container needs no privileges to copy the
# binary into an emptyDir.
USER 65532:65532
ENTRYPOINT ["/haul-taskhost"]
