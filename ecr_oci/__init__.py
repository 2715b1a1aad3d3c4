"""ecr-oci: the Edge Code Repository as an extension of a standard OCI registry."""

__version__ = "0.1.0"
