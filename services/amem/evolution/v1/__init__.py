"""Generated gRPC stubs for amem.evolution.v1 (`make protos`); the service's public API."""
