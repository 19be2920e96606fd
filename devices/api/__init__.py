"""REST layer of the registry (FastAPI)."""
