"""The Python SDK: `Client` and `AsyncClient`, one method per REST operation.

    from amem import Client

    with Client() as memory:  # AMEM_URL (else http://127.0.0.1:8080) and AMEM_API_KEY
        note = memory.add("The deploy key rotates every Monday", user_id="ana")
        for hit in memory.search("when do keys rotate?", user_id="ana").results:
            print(hit.score, hit.memory.content)

Requests and responses are the gateway's own models (amem.schemas), so the SDK cannot drift
from the API. Every error is the taxonomy's class for its code (amem.core.errors: NotFound,
InvalidArgument, RateLimited with `retry_after`, ...). Calls are retried, at most
`max_retries` times, when that is safe: 429 and 503 after their Retry-After (capped), and a
lost connection with exponential backoff, for the calls that can be repeated (reads, searches,
PATCH without If-Match, and creates, which carry an Idempotency-Key the server deduplicates
on, one per call, the same on each attempt); a 503 is retried only for those, a 429 for any.
"""

from __future__ import annotations

from amem.client._wire import DEFAULT_URL
from amem.client.aio import AsyncClient
from amem.client.sync import Client

# Both are documented, printed and pickled as `amem.client.<name>`, where they lived before the
# package was split; the path `from amem.client import Client` keeps working either way.
Client.__module__ = AsyncClient.__module__ = __name__

__all__ = ["DEFAULT_URL", "AsyncClient", "Client"]
