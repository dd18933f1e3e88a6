# Build arguments: VERSION is what `registry-api --version` prints and the
# image's version label; REVISION is the commit. The README's build command:
#   docker build --build-arg VERSION=$(git describe --always) --build-arg REVISION=$(git rev-parse HEAD) .
ARG VERSION=dev
ARG REVISION=unknown

# Build stage: exactly `make build` (CGO_ENABLED=0, -trimpath, version stamped).
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION
RUN make build VERSION=${VERSION}

# Runtime: static binary on distroless, non-root, no shell.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION
ARG REVISION
LABEL org.opencontainers.image.title="registry-api" \
      org.opencontainers.image.description="HTTP/JSON API over the Kubernetes-hosted gRPC service registry" \
      org.opencontainers.image.source="https://github.com/acme/registry-api" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /src/bin/registry-api /registry-api
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/registry-api"]
