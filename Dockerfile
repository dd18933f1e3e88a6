# Build stage: exactly `make build` (CGO_ENABLED=0, -trimpath, version stamped).
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN make build VERSION=${VERSION}

# Runtime: static binary on distroless, non-root, no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/bin/registry-api /registry-api
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/registry-api"]
