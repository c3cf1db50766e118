"""amem: long-term, self-organising memory for LLM agents (A-MEM as a service)."""
