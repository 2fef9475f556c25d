"""One module per resource; each exposes `router` (a FastAPI APIRouter)."""
