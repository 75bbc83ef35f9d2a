"""Benchmarks of geventipc against a hand-written gevent + msgpack floor (``make bench``).

``python -m bench.run`` runs the workloads W1-W4 of issue 4 (and the idle-connection memory
check) for both, each side in its own pinned process, and prints geventipc / floor ratios.
See docs/benchmarks.md.
"""
