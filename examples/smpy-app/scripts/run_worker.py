"""Celery entry point: `celery -A scripts.run_worker:celery worker|beat` from the workspace root."""
import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from refapp.celery_app import make_celery  # noqa: E402
from refapp.settings import Settings  # noqa: E402

celery = make_celery(Settings.from_env())
