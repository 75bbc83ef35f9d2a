"""One side of one workload in this process: ``python -m bench.worker IMPL ROLE WORKLOAD
TRANSPORT ADDRESS CPU PARAMS_JSON`` (the runner starts these)."""
from __future__ import annotations

import json
import os
import sys

from . import common
from .common import pin


def main(argv: list[str]) -> None:
    """Pin, then run the asked side of the asked workload."""
    impl, role, workload, transport, addr, cpu, params = argv
    pin(int(cpu))
    if os.environ.get("BENCH_NOGC"):   # diagnosis only: is the collector the cost?
        import gc  # noqa: PLC0415
        gc.disable()
    if impl == "floor":
        from . import floor as module  # noqa: PLC0415
    else:
        from . import gipc as module  # type: ignore[no-redef]  # noqa: PLC0415
    run = getattr(module, role)
    times = os.times()
    common.CPU_AT_START[0] = times.user + times.system
    profile = os.environ.get("BENCH_PROFILE")   # a role: write cProfile stats for it
    if profile == role:
        import cProfile  # noqa: PLC0415
        cProfile.runctx("run(workload, transport, addr, json.loads(params))", globals(),
                        locals(), f"/tmp/bench-{impl}-{workload}-{role}.prof")
    else:
        run(workload, transport, addr, json.loads(params))


if __name__ == "__main__":
    main(sys.argv[1:])
