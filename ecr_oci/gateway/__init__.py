"""The ECR gateway: a policy sidecar that turns a plain OCI registry into the Edge Code Repository.

``ecr serve`` runs it. Requests reach the registry only through the gateway, which
authenticates callers (Docker Registry v2 token flow), decides what they may see and
do (:mod:`.policy`), checks every manifest before the registry stores it (:mod:`.gate`),
answers the OCI 1.1 referrers API the registry lacks (:mod:`.referrers`), and streams
everything else through unbuffered (:mod:`.proxy`).

Modules: ``state`` (the state store), ``passwords``, ``tokens`` (JWT minting and
checking), ``policy``, ``upstream`` (the registry behind), ``proxy``, ``gate``,
``referrers``, ``api`` (admin and catalog JSON API), ``metrics``, ``audit``,
``app`` (assembly), ``client`` (the admin API client the CLI uses).
"""
