"""Benchmarks and evaluations that run against a real local stack (`make bench`, `make eval`)."""
