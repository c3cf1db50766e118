"""Generated gRPC stubs for amem.embedding.v1 (`make protos`); the service's public API."""
