#!/bin/sh
# Generate the gRPC stubs (and their .pyi) from protos/ into services/: the one way it is done,
# by `make protos` and by every Dockerfile. PYTHON: an interpreter with grpcio-tools.
set -eu
cd "$(dirname "$0")/.."
"${PYTHON:-python}" -m grpc_tools.protoc -I protos --python_out=services --pyi_out=services \
  --grpc_python_out=services $(find protos -name '*.proto' | sort)
