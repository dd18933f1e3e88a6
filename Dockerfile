# Build arguments: VERSION is what `registry-api --version` prints and the
# image's version label; REVISION is the commit. `make image` passes both to
# whichever of docker, podman or buildah is installed; by hand:
#   podman build --build-arg VERSION=$(git describe --always) --build-arg REVISION=$(git rev-parse HEAD) .
#
# Base images are named in full (registry/repository:tag): podman and buildah
# have no default registry to complete a short name. Each is pinned by the
# digest of its tag's multi-platform index, so a rebuilt tag changes nothing
# here until the digest is moved on purpose (`crane digest <image>:<tag>`
# prints the current one); the tag stays for the reader.
ARG VERSION=dev
ARG REVISION=unknown

# Build stage: exactly `make build` (CGO_ENABLED=0, -trimpath, version stamped).
FROM docker.io/library/golang:1.26.8-bookworm@sha256:f4191582e1522dfc5980a6bdc0309a756f9697f3e7d0f199c7e26fc82ab324fd AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION
RUN make build VERSION=${VERSION}

# Runtime: static binary on distroless, non-root, no shell. The binary needs
# nothing of the image (its zone data is embedded): TestImageEmptyRoot runs it
# in an empty root.
FROM gcr.io/distroless/static-debian12:nonroot@sha256:f5b485ea962d9bd1186b2f6b3a061191539b905b82ec395de78cbfae51f20e35
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
