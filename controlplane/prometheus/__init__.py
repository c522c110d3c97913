"""Running a real Prometheus next to Ubiq (demo, tests, benchmarks): its configuration and process.

Queries that turn Prometheus data into placement signals live in ``controlplane.feedback``.
"""
