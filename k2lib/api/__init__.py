"""The REST API over the hybrid query engine: `create_app(settings)` -> FastAPI.

Run it with `k2 api` (uvicorn, 127.0.0.1:8042 by default). Endpoints: /v1/trades,
/v1/trades/recent, /v1/gaps, /v1/health, /v1/degradation, /metrics; schema at /openapi.json.
"""

from k2lib.api.admission import LevelReading, LevelSource, decide
from k2lib.api.app import create_app

__all__ = ["LevelReading", "LevelSource", "create_app", "decide"]
