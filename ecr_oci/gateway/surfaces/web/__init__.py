"""The app store in a browser, served by ``ecr serve`` itself (same process, port and policy).

Server-rendered HTML (Jinja2, autoescaped) that works without JavaScript; one small
script adds copy buttons. Pages: ``/`` (search), ``/bundles/{ns}/{name}[/{version}]``,
``/bundles/{ns}/{name}/-/compare``, ``/bundles/{ns}/{name}/badge.svg``,
``/namespaces/{ns}``, ``/login``, ``/logout``; owners' forms post to
``/bundles/{ns}/{name}/-/{visibility,grants,stage}``.
"""

from __future__ import annotations

from starlette.routing import Route

from ecr_oci.gateway.surfaces.web import views

routes = [
    Route("/", views.home),
    Route("/static/{file}", views.static),
    Route("/login", views.login_form, methods=["GET"]),
    Route("/login", views.login, methods=["POST"]),
    Route("/logout", views.logout, methods=["POST"]),
    Route("/namespaces/{ns}", views.namespace),
    Route("/bundles/{ns}/{name}", views.bundle),
    Route("/bundles/{ns}/{name}/badge.svg", views.badge),
    Route("/bundles/{ns}/{name}/-/compare", views.compare),
    Route("/bundles/{ns}/{name}/-/icon/{version}", views.icon),
    Route("/bundles/{ns}/{name}/-/visibility", views.set_visibility, methods=["POST"]),
    Route("/bundles/{ns}/{name}/-/grants", views.set_grant, methods=["POST"]),
    Route("/bundles/{ns}/{name}/-/stage", views.set_stage, methods=["POST"]),
    Route("/bundles/{ns}/{name}/{version}", views.bundle),
    # Anything else under the web paths: the one not-found page, like a hidden bundle.
    Route("/bundles/{rest:path}", views.not_found),
    Route("/namespaces/{rest:path}", views.not_found),
]
