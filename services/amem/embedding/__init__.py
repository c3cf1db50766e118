"""The embedding service: sentence-transformers behind gRPC with dynamic batching.

Importing this package is cheap; torch is imported only by `amem.embedding.encoder`.
"""
