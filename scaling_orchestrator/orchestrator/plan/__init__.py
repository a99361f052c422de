"""Sweep -> Plan (pure, deterministic): trials per budget, feasibility, placement on the
cluster (micro-batches, GPU-hours, makespan), and the printed table."""
