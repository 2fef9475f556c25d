"""The HTTP API of `shipyard serve` (FastAPI): `create_app(ApiSettings)`; versioned under /api/v1, OpenAPI at
/api/openapi.json. Every endpoint but /healthz needs a token (store/tokens.py), checked in auth.py; the
response shapes are in schemas.py, apart from the tables; routes/ holds one module per resource."""

from shipyard.api.app import ApiSettings, create_app

__all__ = ["ApiSettings", "create_app"]
