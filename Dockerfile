# dodai in a container, e.g. the "temporary netboot server" of the
# bare-metal recipe:
#
#   docker build -t dodai .
#   docker run --rm -it --net=host --cap-add NET_ADMIN --cap-add NET_BIND_SERVICE \
#     -v "$PWD:/cluster" dodai netboot -C /cluster --interface eno1
#
# --net=host: DHCP (67, 4011), TFTP (69) and HTTP must be on the boot
# network itself. The image carries Debian's iPXE binaries
# (/usr/lib/ipxe: undionly.kpxe, snponly.efi, ipxe.efi), the default
# --ipxe-dir. (Not built in dodai's CI: the build machines have no
# container engine.)

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/dodai ./cmd/dodai

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ipxe ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/dodai /usr/local/bin/dodai
WORKDIR /cluster
ENTRYPOINT ["/usr/local/bin/dodai"]
CMD ["--help"]
