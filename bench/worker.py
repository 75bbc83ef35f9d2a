"""One side of one workload in this process: ``python -m bench.worker IMPL ROLE WORKLOAD
TRANSPORT ADDRESS CPU PARAMS_JSON`` (the runner starts these)."""
from __future__ import annotations

import json
import sys

from .common import pin


def main(argv: list[str]) -> None:
    """Pin, then run the asked side of the asked workload."""
    impl, role, workload, transport, addr, cpu, params = argv
    pin(int(cpu))
    if impl == "floor":
        from . import floor as module  # noqa: PLC0415
    else:
        from . import gipc as module  # type: ignore[no-redef]  # noqa: PLC0415
    getattr(module, role)(workload, transport, addr, json.loads(params))


if __name__ == "__main__":
    main(sys.argv[1:])
