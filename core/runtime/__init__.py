"""The runtime: the thread service, the loop, approvals, router, roster, workflows, worker, delivery."""
