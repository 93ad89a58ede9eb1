"""Deterministic workflows: plain Python steps run by the agent loop (see `core.workflows.engine`)."""

from core.workflows.engine import Outcome, Progress, Workflow, WorkflowModel
from core.workflows.release import Release
from core.workflows.stale_deploys import StaleDeploys

__all__ = ["Outcome", "Progress", "Release", "StaleDeploys", "Workflow", "WorkflowModel"]
