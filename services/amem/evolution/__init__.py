"""The evolution service: A-MEM's note construction, link generation and memory evolution,
done durably and asynchronously behind gRPC."""
