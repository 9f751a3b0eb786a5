"""The HTTP API: ``uvicorn taskboard.api:app`` from backend/."""
from __future__ import annotations

import redis
from celery.result import AsyncResult
from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, insert, select, text

from taskboard import db, jobs, settings, tokens

config = settings.load()
app = FastAPI(title="taskboard", debug=config.debug)


def database():
    return db.engine(config.database_url, config.pool_size, config.max_overflow)


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=200)


class NewTask(BaseModel):
    title: str = Field(min_length=1, max_length=200)


class Sum(BaseModel):
    a: int
    b: int


def current_user(authorization: str = Header(default="")) -> str:
    scheme, _, token = authorization.partition(" ")
    username = tokens.verify(config.secret_key, token) if scheme.lower() == "bearer" else None
    if username is None:
        raise HTTPException(401, "a valid token is needed", headers={"WWW-Authenticate": "Bearer"})
    return username


@app.get("/healthz/", response_class=PlainTextResponse)
def healthz() -> PlainTextResponse:
    """``true`` when the database and Redis answer, ``false`` (503) when either does not."""
    try:
        with database().connect() as connection:
            connection.execute(text("SELECT 1"))
        redis.Redis.from_url(config.redis_url, socket_timeout=2).ping()
    except Exception:
        return PlainTextResponse("false", status_code=503)
    return PlainTextResponse("true")


@app.post("/login")
def login(body: Login) -> dict:
    with database().connect() as connection:
        stored = connection.execute(
            select(db.users.c.password_hash).where(db.users.c.username == body.username)).scalar()
    if stored is None or not tokens.check_password(body.password, stored):
        raise HTTPException(401, "wrong username or password")
    return {"token": tokens.issue(config.secret_key, body.username)}


@app.get("/me")
def me(username: str = Depends(current_user)) -> dict:
    return {"username": username}


@app.get("/tasks")
def list_tasks() -> dict:
    with database().connect() as connection:
        count = connection.execute(select(func.count()).select_from(db.tasks)).scalar_one()
        rows = connection.execute(select(db.tasks.c.id, db.tasks.c.title)
                                  .order_by(db.tasks.c.id.desc()).limit(20)).all()
    return {"count": count, "latest": [{"id": row.id, "title": row.title} for row in rows]}


@app.post("/tasks", status_code=201)
def create_task(body: NewTask, username: str = Depends(current_user)) -> dict:
    with database().begin() as connection:
        task_id = connection.execute(insert(db.tasks).values(title=body.title)
                                     .returning(db.tasks.c.id)).scalar_one()
    return {"id": task_id, "title": body.title}


@app.post("/jobs/add", status_code=202)
def queue_sum(body: Sum) -> dict:
    return {"id": jobs.add.delay(body.a, body.b).id}


@app.get("/jobs/{job_id}")
def job(job_id: str) -> dict:
    result = AsyncResult(job_id, app=jobs.celery)
    return {"state": result.state, "result": result.result if result.successful() else None}


@app.get("/ticks")
def ticks() -> dict:
    """How many times beat's periodic tick ran, and when it last did."""
    values = redis.Redis.from_url(config.redis_url, decode_responses=True).hgetall(jobs.TICK_KEY)
    return {"count": int(values.get("count", 0)), "last": float(values.get("last", 0))}
