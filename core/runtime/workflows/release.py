"""`/release <service> <version> [environment]`: tests, deploy, health check, roll back if unhealthy.

Every step is a tool call through the agent loop, so the production deploy and the production
rollback wait for an approver (the tools' policy, enforced in code), and a release waiting for
approval resumes on whichever process takes the decision. The `incident` agent is called only
where judgement is needed: a deploy that failed, or a rollback that did not happen.
"""

from __future__ import annotations

from core.model.llm import Choice
from core.runtime.workflows.engine import Progress

JUDGE = "incident"


class Release:
    def step(self, run: Progress) -> Choice:
        service, version, env = run.args["service"], run.args["version"], run.args["environment"]
        what = f"{service} {version} to {env}"
        tests = run.outcome("run_tests")
        if tests is None:
            return run.call("run_tests", f"{what}: run the tests first", service=service)
        if not tests.ok:
            return run.reply(f"release of {what} stopped: the tests failed, nothing was deployed.\n{tests.text}")
        deploy = run.outcome("deploy")
        if deploy is None:
            reason = f"{what}: the tests passed ({tests.text}); deploy"
            return run.call("deploy", reason, service=service, version=version, environment=env)
        if deploy.kind in ("rejected", "expired"):
            return run.reply(f"release of {what} stopped before the deploy: {deploy.text}")
        if not deploy.ok:
            note = f"release of {what}: the tests passed but the deploy failed: {deploy.text}"
            return run.hand_to(JUDGE, f"{note}. Find out why and tell {run.requester} what to do next.")
        return self._after_deploy(run, service, env, what)

    def _after_deploy(self, run: Progress, service: str, env: str, what: str) -> Choice:
        health = run.outcome("health")
        if health is None:
            return run.call("health", f"{what}: deployed; check health", service=service, environment=env)
        if health.ok:
            return run.reply(f"released {what}: the tests passed, it is deployed and healthy.\n{health.text}")
        rollback = run.outcome("rollback")
        if rollback is None:
            reason = f"{what}: unhealthy after the deploy ({health.text}); roll back"
            return run.call("rollback", reason, service=service, environment=env)
        if rollback.ok:
            return run.reply(
                f"{run.requester}: {what} was unhealthy after the deploy, so it was rolled back.\n"
                f"health check: {health.text}\nrollback: {rollback.text}"
            )
        note = (
            f"release of {what}: unhealthy after the deploy ({health.text}) and the rollback did not happen "
            f"({rollback.text}). {service} in {env} may be broken; decide what to do with {run.requester}."
        )
        return run.hand_to(JUDGE, note)
