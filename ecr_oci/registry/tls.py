"""requests sessions that keep the TLS choice the user made.

requests lets ``REQUESTS_CA_BUNDLE`` and ``CURL_CA_BUNDLE`` override a session's own
``verify`` (psf/requests#3829): with either set (they are on these machines and on many
CI runners and corporate desktops), ``--insecure`` was silently ignored and a
self-signed registry stayed unreachable. Here a session's explicit choice (``False``,
or a CA file) wins; the default (``True``) still takes the environment's CA bundle.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import TYPE_CHECKING

import requests

if TYPE_CHECKING:
    from requests.sessions import _Settings


class TLSChoiceSession(requests.Session):
    def merge_environment_settings(self, url: str | bytes | None, proxies: MutableMapping[str, str] | None,
                                   stream: bool | None, verify: bool | str | None,
                                   cert: str | tuple[str, str] | None) -> _Settings:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if verify is None and self.verify is not True:  # no per-request choice: the session's stands
            settings["verify"] = self.verify
        return settings


def session(verify: bool | str = True) -> requests.Session:
    """A session verifying TLS as ``verify`` says (False: not at all; a path: with that CA file)."""
    made = TLSChoiceSession()
    made.verify = verify
    return made
