"""Property-based run of schemathesis against /openapi.json: no generated request gets a 5xx.

Schemathesis' client is synchronous, so the server runs with its own event loop in a thread
(`server_in_thread`), seeded with a thread that waits for approval. Valid and invalid inputs
are generated for every operation, with bounded, derandomized examples so the run is fast and
repeatable. Besides "no 5xx", schemathesis' default checks hold too: every answer matches the
documented status codes and schemas, invalid input is refused, and so are calls without a token.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.web.conftest import ALICE, server_in_thread

EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}
# A long-poll waits up to `wait` seconds by design; its inputs are covered in test_web_channel.py.
SKIPPED = {("GET", "/web/updates")}
# The console's event streams never end by design; their inputs are covered in test_live.py.
SKIPPED |= {("GET", "/web/live"), ("GET", "/web/live/threads/{thread_id}")}
# Not checked: "schema-valid input is accepted". Some refusals are rules JSON Schema cannot state (an
# agent name this bot does not run, launch text that reads as `approve <id>`, a hook payload missing a
# field its template uses); they are 422s with a message, tested in test_api.py and test_hooks.py.
EXCLUDED = [positive_data_acceptance]
# The token goes through schemathesis' auth, so a case that leaves it out on purpose is sent without it.
CONFIG = schemathesis.Config.from_dict({"auth": {"openapi": {"HTTPBearer": {"bearer": ALICE}}}})


def has_inputs(definition: dict[str, object]) -> bool:
    return bool(definition.get("parameters") or definition.get("requestBody"))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_generated_request_gets_a_server_error(tmp_path: Path, mode: GenerationMode) -> None:
    with server_in_thread(tmp_path) as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=CONFIG)
        operations = [result.ok() for result in schema.get_all_operations()]
        checked, statuses = [], Counter[int]()
        for operation in operations:
            if (operation.method.upper(), operation.path) in SKIPPED:
                continue
            if mode is GenerationMode.NEGATIVE and not has_inputs(operation.definition.raw):
                continue  # nothing to make invalid (GET /healthz)

            @settings(
                max_examples=EXAMPLES[mode],
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case: schemathesis.Case) -> None:
                response = case.call_and_validate(excluded_checks=EXCLUDED, timeout=10)
                statuses[response.status_code // 100 * 100] += 1

            call()
            checked.append(operation.label)
        # with /metrics, the two dead-letter routes, /web/commands, the console's two event streams, the audit trail,
        # snooze and the bulk decisions, and the standing grants' list and revoke
        assert len(checked) >= 16 and len(operations) == 28
        assert statuses[500] == 0 and statuses[400] > 0
        if mode is GenerationMode.POSITIVE:
            assert statuses[200] > 0  # the token was sent and accepted
