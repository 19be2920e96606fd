"""Property-based API test: schemathesis against the app's OpenAPI schema, in-process (ASGI)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from devices.main import create_app
from devices.publisher import MemoryRegistryPublisher
from devices.settings import RegistrySettings
from tests.unit.registry.conftest import ADMIN_TOKEN

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


# Built at import: schemathesis needs the schema at collection time (its lazy ``from_fixture``
# loader fails on this pytest version). The database lives in a private temporary directory.
_STATE = Path(tempfile.mkdtemp(prefix="registry-schemathesis-"))
_APP = create_app(
    RegistrySettings(state_dir=_STATE, registry_admin_key=ADMIN_TOKEN),  # type: ignore[arg-type]
    publisher=MemoryRegistryPublisher(),
)
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"X-API-Key": ADMIN_TOKEN}, checks=CHECKS)
