"""Benchmarks of geventipc against a hand-written gevent + msgpack floor and node-ipc 14
(``make bench``).

``python -m bench.run`` runs the workloads W1-W4 of issue 4 (with TLS, payload-size and
idle-connection rows) for geventipc and, in the same run, its baselines, each side in its
own pinned process, and prints every ratio next to issue 16's target. Other suites plug in
through ``PLUGINS`` in bench/run.py. See docs/benchmarks.md.
"""
