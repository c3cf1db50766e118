#!/bin/sh
# `make images`: the three images, tagged amem-gateway:dev, amem-embedding:dev (CPU) and
# amem-evolution:dev, built with the engine here. Where Docker Hub is unreachable the base is
# built from Debian's packages (trusting this machine's local CAs: test images), and where
# PyTorch's index is unreachable torch's CPU wheel is served from this machine's disk.
#   AMEM_PYTHON_IMAGE   the base image to use (skips the choice)
#   AMEM_TORCH_WHEELS   a directory holding torch-2.13.0+cpu (default: /opt/wheels, if it does)
#   AMEM_IMAGE_TAG      the tag (default: dev)
set -eu
cd "$(dirname "$0")/.."
scripts/docker-up.sh
tag="${AMEM_IMAGE_TAG:-dev}"
base="${AMEM_PYTHON_IMAGE:-}"
if [ -z "$base" ]; then
  if docker pull -q python:3.11.11-slim-bookworm >/dev/null 2>&1; then
    base=python:3.11.11-slim-bookworm
  else
    echo "images: Docker Hub is unreachable; building a base image from Debian's packages" >&2
    base=$(scripts/build-base-image.sh --trust-local-ca)
  fi
fi
torch_args=""
wheels="${AMEM_TORCH_WHEELS:-/opt/wheels}"
server=""
if ls "$wheels"/torch-2.13.0+cpu-*.whl >/dev/null 2>&1; then
  # The build containers reach the host at the bridge's address.
  host=$(ip -4 -o addr show docker0 2>/dev/null | awk '{print $4}' | cut -d/ -f1)
  # A fixed port when it is free: the URL is a build argument, and a new one each run would
  # invalidate the embedding image's cached layers (a 2-minute rebuild for nothing).
  port=$(python3 -c 'import socket
s = socket.socket()
try:
    s.bind(("", 47113))
except OSError:
    s.bind(("", 0))
print(s.getsockname()[1])')
  python3 -m http.server --bind "${host:-172.17.0.1}" --directory "$wheels" "$port" \
    >/dev/null 2>&1 &
  server=$!
  trap 'kill $server 2>/dev/null || true' EXIT
  torch_args="--build-arg TORCH_FIND_LINKS=http://${host:-172.17.0.1}:$port/"
fi
for service in gateway evolution embedding; do
  echo "images: building amem-$service:$tag from $base" >&2
  started=$(date +%s)
  # The gateway and evolution share services/amem/Dockerfile (SERVICE picks which).
  if [ "$service" = embedding ]; then
    recipe="-f services/amem/embedding/Dockerfile $torch_args"
  else
    recipe="-f services/amem/Dockerfile --build-arg SERVICE=$service"
  fi
  # The classic builder: no buildx plugin needed, and these Dockerfiles use no BuildKit feature.
  # shellcheck disable=SC2086 (recipe is words, none with spaces)
  DOCKER_BUILDKIT=0 docker build --quiet $recipe \
    --build-arg PYTHON_IMAGE="$base" \
    -t "amem-$service:$tag" . >/dev/null
  size=$(docker image inspect -f '{{.Size}}' "amem-$service:$tag")
  echo "images: amem-$service:$tag $((size / 1000000)) MB in $(( $(date +%s) - started )) s" >&2
done
echo "$base"  # on stdout: the base the images were built from
