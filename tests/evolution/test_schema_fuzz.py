"""schemathesis against the gateway's own OpenAPI schema, with a fixed budget of generated
requests per operation, valid and invalid: no 5xx, and every response as documented (status
code, content type, headers, body schema). It runs against the evolution stack, the one with
every dependency configured (evolution included), so a 503 would be a real failure.

(schemathesis's pytest fixture integration does not run under pytest 9, so each operation's
strategy is driven by hypothesis here directly.)"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import positive_data_acceptance

from amem.devstack import LocalStack
from tests.conftest import KEY_A

EXAMPLES = 25


def _fuzz(strategy):
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        # No shrinking: a failure is reported as found, with its curl line, in seconds.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data) -> None:
        case = data.draw(strategy)
        case.call_and_validate(
            headers={"Authorization": f"Bearer {KEY_A}"},
            # Schema-valid is not always acceptable: a link to a memory that does not exist
            # is well-formed and still 422. Every other default check applies.
            excluded_checks=[positive_data_acceptance],
            timeout=30,
        )

    return run


def test_the_gateway_keeps_to_its_schema(evo_stack: LocalStack) -> None:
    schema = schemathesis.openapi.from_url(f"{evo_stack.gateway_url}/openapi.json")
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    for operation in operations:
        try:
            _fuzz(operation.as_strategy())()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - reported together
            found = exc.exceptions if isinstance(exc, BaseExceptionGroup) else [exc]
            failures[operation.label] = "\n".join(str(e)[:2000] for e in found)
    assert not failures, "\n\n".join(f"{label}:\n{why}" for label, why in failures.items())
