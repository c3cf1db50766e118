"""The gateway: amem's public REST API (FastAPI)."""
