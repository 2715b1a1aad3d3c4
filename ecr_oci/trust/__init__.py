"""Trust: cosign-compatible keys, signatures, provenance and their verification policies.

* :mod:`ecr_oci.trust.keys`: key pairs in cosign's encrypted format or plain PEM, and
  the :class:`~ecr_oci.trust.keys.Signer` interface (local key or KMS);
* :mod:`ecr_oci.trust.simplesigning`: cosign's payload, layer and ``.sig`` manifest;
* :mod:`ecr_oci.trust.policy`: composable verification policies;
* :mod:`ecr_oci.trust.sign` / :mod:`ecr_oci.trust.verify`: signatures in a registry;
* :mod:`ecr_oci.trust.dsse` / :mod:`ecr_oci.trust.provenance`: SLSA provenance in DSSE.

The formats and the threat model are described in ``annotations-spec/v1/trust.md``.
"""
