"""HTTP surfaces of the gateway: the registry proxy (/v2), the token endpoint, /api/v1, the web pages."""
