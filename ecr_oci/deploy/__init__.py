"""Running a bundle on a node: Kubernetes/podman specs and the model-fetcher image.

Spec: ``annotations-spec/v1/deploy.md``.
"""
