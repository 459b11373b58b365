# syntax=docker/dockerfile:1
# Static binaries (redeemer, manager) on distroless, running as non-root.
# One image for both: the operator runs /manager, the fleets /redeemer.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/ ./cmd/redeemer ./cmd/manager

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/redeemer /out/manager /
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/redeemer"]
