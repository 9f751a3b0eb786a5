"""The FastAPI application: health, version, session, uploads, tasks and pages."""
from __future__ import annotations

import asyncio
import datetime as dt
import html
import logging
import re
import time
from contextlib import asynccontextmanager

import sqlalchemy as sa
from fastapi import FastAPI, File, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel
from redis.asyncio import Redis
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import logs
from .assets import STATIC_URL, CachingStaticFiles, load_assets
from .celery_app import ADD_TASK, make_celery
from .db import make_async_engine, read_migration_state, uploads, users
from .security import verify_password
from .settings import Settings
from .storage import check_key, make_storage, new_key

log = logging.getLogger("refapp")
request_log = logging.getLogger("refapp.request")
_CID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_SEVERITY = {"healthy": 0, "degraded": 1, "unhealthy": 2}


class CorrelationIdMiddleware:
    """Sets a correlation id per request (honouring X-Correlation-ID), echoes it and X-Release back."""

    def __init__(self, app: ASGIApp, release: str):
        self.app = app
        self.release = release.encode("latin-1", "replace")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-correlation-id", b"").decode("latin-1")
        cid = incoming if _CID_RE.match(incoming) else logs.new_correlation_id()
        token = logs.correlation_id.set(cid)
        status = {"code": 500, "started": False}
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in (b"x-correlation-id", b"x-release")]
                headers += [(b"x-correlation-id", cid.encode()), (b"x-release", self.release)]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if status["started"]:
                raise
            await JSONResponse({"detail": "internal server error"}, status_code=500)(scope, receive, send_wrapper)
        finally:
            request_log.info(
                "%s %s %s",
                scope["method"],
                scope["path"],
                status["code"],
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status["code"],
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "client": (scope.get("client") or ("-",))[0],
                },
            )
            logs.correlation_id.reset(token)


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings: Settings = app.state.settings
    app.state.engine = make_async_engine(settings)
    app.state.redis = Redis.from_url(
        settings.redis_url, socket_connect_timeout=settings.health_timeout, socket_timeout=settings.health_timeout
    )
    app.state.storage = make_storage(settings)
    app.state.celery = make_celery(settings)
    try:
        state = await read_migration_state(app.state.engine, settings.workspace_root)
        app.state.migration = state
        if not state.ok:
            message = f"SM010 database is not at the migration head: current={state.current} head={state.head}"
            if state.error:
                message += f" ({state.error})"
            if settings.is_production:
                log.error(message + "; refusing to start, run `cd host && alembic upgrade head`")
                raise RuntimeError(message)
            log.warning(message)
        elif state.ahead:
            log.warning("database revision %s is newer than this release's head %s: running on the newer "
                        "schema after a rollback (migrations are expand/contract)", state.current, state.head)
        app.state.assets = load_assets(settings.static_dir, settings.is_production, settings.vite_dev_url)
        log.info("refapp started: environment=%s release=%s", settings.environment, settings.release_id)
        yield
    finally:
        await app.state.redis.aclose()
        await app.state.engine.dispose()


async def _run_check(name: str, check, failure: str, timeout: float) -> tuple[str, dict]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), timeout)
        result = {"status": "healthy"}
    except asyncio.TimeoutError:
        result = {"status": failure, "error": f"timed out after {timeout}s"}
    except Exception as exc:
        result = {"status": failure, "error": f"{type(exc).__name__}: {exc}"[:300]}
    result["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return name, result


class SessionIn(BaseModel):
    name: str


class Credentials(BaseModel):
    email: str
    password: str


class AddIn(BaseModel):
    x: int
    y: int


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    logs.configure_logging(settings.log_format, settings.log_level)
    app = FastAPI(title="smpy reference app", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.add_middleware(SessionMiddleware, secret_key=settings.secret_key)
    app.add_middleware(CorrelationIdMiddleware, release=settings.release_id)
    app.mount(STATIC_URL, CachingStaticFiles(directory=settings.static_dir, check_dir=False), name="static")

    @app.get("/health")
    async def health(request: Request):
        return {"status": "healthy", "migration": request.app.state.migration.as_dict()}

    @app.get("/health/live")
    async def live():
        return {"status": "alive"}

    @app.get("/health/ready")
    async def ready(request: Request):
        state = request.app.state

        async def database():
            async with state.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))

        async def redis():
            await state.redis.ping()

        async def file_storage():
            await asyncio.to_thread(state.storage.check)

        timeout = settings.health_timeout
        results = dict(
            await asyncio.gather(
                _run_check("database", database, "unhealthy", timeout),
                _run_check("redis", redis, "unhealthy", timeout),
                _run_check("file_storage", file_storage, "degraded", timeout),
            )
        )
        worst = max((r["status"] for r in results.values()), key=_SEVERITY.__getitem__)
        return {"status": worst, "checks": results}

    @app.get("/version")
    async def version():
        return {"release": settings.release_id}

    @app.get("/", response_class=HTMLResponse)
    async def index(request: Request):
        name = request.session.get("name")
        greeting = f"Hello, {html.escape(name)}." if name else "No name in the session yet."
        return HTMLResponse(
            f"""<!doctype html>
<html><head><meta charset="utf-8"><title>smpy reference app</title>
{request.app.state.assets.tags()}
</head><body>
<div id="app" data-release="{html.escape(settings.release_id)}">
<h1>smpy reference app</h1>
<p id="greeting">{greeting}</p>
<p>Release {html.escape(settings.release_id)} &middot; environment {html.escape(settings.environment)}</p>
<form method="post" action="/uploads" enctype="multipart/form-data"><input type="file" name="file"><button>Upload</button></form>
</div></body></html>"""
        )

    @app.get("/session")
    async def get_session(request: Request):
        return {"name": request.session.get("name")}

    @app.post("/session")
    async def set_session(request: Request, body: SessionIn):
        request.session["name"] = body.name
        return {"name": body.name}

    @app.post("/login")
    async def login(request: Request, body: Credentials):
        async with request.app.state.engine.connect() as conn:
            row = (await conn.execute(sa.select(users).where(users.c.email == body.email.strip().lower()))).first()
        if row is None or not await run_in_threadpool(verify_password, body.password, row.password_hash):
            raise HTTPException(401, "invalid email or password")
        request.session["user_id"] = row.id
        return {"id": row.id, "email": row.email, "is_admin": row.is_admin}

    @app.post("/logout")
    async def logout(request: Request):
        request.session.clear()
        return {"ok": True}

    @app.get("/me")
    async def me(request: Request):
        user_id = request.session.get("user_id")
        if user_id is None:
            raise HTTPException(401, "not signed in")
        async with request.app.state.engine.connect() as conn:
            row = (await conn.execute(sa.select(users).where(users.c.id == user_id))).first()
        if row is None:
            request.session.clear()
            raise HTTPException(401, "not signed in")
        return {"id": row.id, "email": row.email, "is_admin": row.is_admin}

    @app.post("/uploads", status_code=201)
    async def upload(request: Request, file: UploadFile = File(...)):
        data = await file.read()
        key = new_key()
        storage = request.app.state.storage
        await run_in_threadpool(storage.save, key, data)
        async with request.app.state.engine.begin() as conn:
            await conn.execute(
                uploads.insert().values(
                    key=key,
                    filename=(file.filename or "upload")[:255],
                    content_type=(file.content_type or "application/octet-stream")[:255],
                    size=len(data),
                    backend=storage.name,
                    created_at=dt.datetime.now(dt.timezone.utc),
                )
            )
        return {"key": key, "size": len(data), "backend": storage.name}

    @app.get("/uploads/{key}")
    async def download(request: Request, key: str):
        try:
            check_key(key)
            data = await run_in_threadpool(request.app.state.storage.read, key)
        except KeyError:
            raise HTTPException(404, "no such upload") from None
        async with request.app.state.engine.connect() as conn:
            row = (await conn.execute(sa.select(uploads.c.content_type).where(uploads.c.key == key))).first()
        return Response(data, media_type=row.content_type if row else "application/octet-stream")

    @app.post("/tasks/add", status_code=202)
    async def enqueue_add(request: Request, body: AddIn):
        celery = request.app.state.celery
        result = await run_in_threadpool(celery.send_task, ADD_TASK, args=[body.x, body.y])
        return {"task_id": result.id}

    @app.get("/tasks/{task_id}")
    async def task_status(request: Request, task_id: str):
        result = request.app.state.celery.AsyncResult(task_id)
        state = await run_in_threadpool(lambda: result.state)
        value = await run_in_threadpool(lambda: result.result) if state == "SUCCESS" else None
        return {"task_id": task_id, "state": state, "result": value}

    return app
