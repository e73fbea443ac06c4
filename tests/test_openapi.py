"""docs/openapi.yaml is a valid OpenAPI document and lists exactly the routes both roles serve."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from openapi_spec_validator import validate

from gusher.app import create_master_app, create_slave_app
from gusher.config import load_settings

SPEC = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
# Routes that are not API: the demo page and the JS client (both roles), Flask's static files, the catch-alls
# that only explain a malformed push path, and the admin console (/ui: a page and
# the JSON only its script reads, tested in tests/test_console.py).
NOT_API = {
    "static",
    "gusher_master.push_malformed",
    "gusher_slave.demo_page",
    "demo_page",
    "gusher_slave.client_module",
    "client_module",
}
NOT_API_BLUEPRINTS = ("gusher_console.",)


def _served(redis_addr: str) -> set[tuple[str, str]]:
    settings = load_settings("/nonexistent", {"REDIS_ADDR": redis_addr})
    routes = set()
    for app in (create_master_app(settings), create_slave_app(settings)):
        for rule in app.url_map.iter_rules():
            if (
                rule.endpoint in NOT_API or rule.endpoint.startswith(NOT_API_BLUEPRINTS) or rule.defaults
            ):  # `defaults` rules are the empty-key variants
                continue
            path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                routes.add((path, method.lower()))
    return routes


def test_openapi_document_is_valid() -> None:
    """openapi-spec-validator accepts the document."""
    validate(yaml.safe_load(SPEC.read_text()))


def test_openapi_matches_the_routes(redis_server) -> None:
    """Every served route is documented, and every documented one is served."""
    spec = yaml.safe_load(SPEC.read_text())
    documented = {
        (path, method)
        for path, item in spec["paths"].items()
        for method in item
        if method in {"get", "post", "put", "delete", "patch"}
    }
    assert documented == _served(redis_server.addr)
