"""The control flow end to end on one Redis: commands, approvals, rejections, questions, limits."""

from __future__ import annotations

import json
from pathlib import Path

from core import events as ev
from tests.conftest import ScriptedModel, call


async def test_gated_deploy_waits_for_approval_then_runs_once(redis_client, make_harness, tmp_path: Path) -> None:
    h = make_harness(redis_client)
    await h.say("/deploy api 1.4.2 production")
    request = [o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest)]
    assert len(request) == 1 and request[0].args == {"service": "api", "version": "1.4.2", "environment": "production"}
    await h.say(f"approve {request[0].approval_id}")
    await h.say(f"approve {request[0].approval_id}")
    state = json.loads((tmp_path / "data" / "deployments.json").read_text())
    deploys = [e for e in state["history"] if e["action"] == "deploy"]
    assert [(d["service"], d["version"], d["by"]) for d in deploys] == [("api", "1.4.2", "cli:operator")]
    texts = [o.text for o in await h.outbox() if isinstance(o, ev.Reply | ev.Notice)]
    assert any("deployed api 1.4.2 to production" in t for t in texts)
    assert any("already approved by cli:operator" in t for t in texts)


async def test_model_sees_rejection_reason(redis_client, make_harness) -> None:
    model = ScriptedModel([call("deploy", service="api", version="1.4.2", environment="production")])
    h = make_harness(redis_client, model)
    await h.say("ship api 1.4.2 to prod")
    approval = next(o for o in await h.outbox() if isinstance(o, ev.ApprovalRequest))
    model.script.append(call("reply", message="ok, not deploying"))
    await h.say(f"reject {approval.approval_id} not during the freeze")
    last = model.requests[-1].history
    errors = [e for e in last if isinstance(e, ev.ToolErrorEvent)]
    assert errors[-1].kind == "rejected" and "not during the freeze" in errors[-1].error
    assert not any(isinstance(e, ev.ToolStarted) for e in last)
