"""Deterministic workflows: plain Python steps run by the agent loop (see `core.runtime.workflows.engine`)."""

from core.runtime.workflows.engine import Outcome, Progress, Workflow, WorkflowModel
from core.runtime.workflows.release import Release
from core.runtime.workflows.stale_deploys import StaleDeploys

__all__ = ["Outcome", "Progress", "Release", "StaleDeploys", "Workflow", "WorkflowModel"]
