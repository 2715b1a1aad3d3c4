"""The gateway's domain: names, policy, catalog, stages, releases, referrers, the gate, nodes and the feed."""
