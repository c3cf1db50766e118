"""A-mem's package, backed by an amem server: existing code written against A-mem
(`from agentic_memory.memory_system import AgenticMemorySystem, MemoryNote`) runs unchanged,
configured by AMEM_URL and AMEM_API_KEY. See `agentic_memory.memory_system` and docs/a-mem.md.
"""
