"""``ecr node-exporter``: per-container resource metrics of running bundles, for any plugin.

Spec of the metrics: ``annotations-spec/v1/deploy.md`` §4.
"""
