"""taskboard: a small task board (FastAPI API, Celery jobs, a static front end)."""
