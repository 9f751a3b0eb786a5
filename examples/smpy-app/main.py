"""ASGI entry point: `uvicorn main:app --proxy-headers` from the workspace root."""
from refapp.web import create_app

app = create_app()
