"""DOIs for bundles: DataCite metadata from annotations, a provider, and a DOI record referrer.

See annotations-spec/v1/doi.md. Modules: :mod:`config` (file/env configuration),
:mod:`metadata` (DataCite 4.x attributes + validation), :mod:`provider` (the
``DoiProvider`` protocol), :mod:`datacite` (REST API implementation), :mod:`record`
(the referrer), :mod:`mint` (the whole flow).
"""
