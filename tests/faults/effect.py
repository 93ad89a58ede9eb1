"""A command tool with a visible side effect: `python effect.py FILE CALL_ID THREAD_ID LABEL SECONDS`.

It appends `CALL_ID THREAD_ID LABEL WORKER_PID TOOL_PID` to FILE (flushed and fsynced, so a worker
killed right after still leaves the line), then sleeps SECONDS. The fault tests count these
lines: a tool that ran twice shows up here even if the thread log hides it. The worker pid
says which process is inside the tool; the tool's own pid lets the teardown stop a tool that
outlived its worker.
"""

from __future__ import annotations

import os
import sys
import time


def main(path: str, call_id: str, thread_id: str, label: str, seconds: str) -> None:
    with open(path, "a", encoding="utf-8") as out:
        out.write(f"{call_id} {thread_id} {label} {os.getppid()} {os.getpid()}\n")
        out.flush()
        os.fsync(out.fileno())
    time.sleep(float(seconds))
    print(f"wrote {label}")


if __name__ == "__main__":
    main(*sys.argv[1:])
