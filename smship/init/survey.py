"""Reading an app's repository into the facts of a starting inventory."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from smship.appname import app_name_from
from smship.init import python_code
from smship.init.facts import Fact, found, guessed
from smship.init.python_code import SKIPPED_DIRS, Spot

# Debian 12's python3, what hosts have unless app.python names another.
HOSTS_PYTHON = (3, 11)

# The smship-managed settings and the names that usually carry them, most specific first.
SETTING_PATTERNS = {
    "environment": (r"APP_ENV|ENVIRONMENT|ENV", r".*_ENVIRONMENT|.*_APP_ENV|.*_ENV"),
    "database_url": (r"DATABASE_URL", r".*_DATABASE_URL|.*_DB_URL|DB_URL"),
    "redis_url": (r"REDIS_URL", r".*_REDIS_URL"),
    "broker_url": (r"CELERY_BROKER_URL|BROKER_URL", r".*_BROKER_URL"),
    "secret_key": (r"SECRET_KEY", r".*_SECRET_KEY"),
    "file_storage_path": (r".*FILE_STORAGE_PATH|.*UPLOAD_DIR|.*MEDIA_ROOT",),
    "log_format": (r".*LOG_FORMAT",),
    "db_pool_size": (r".*DB_POOL_SIZE|.*POOL_SIZE",),
    "db_max_overflow": (r".*DB_MAX_OVERFLOW|.*MAX_OVERFLOW",),
}
# Settings every inventory has a name for: not found, smpy's name stays, as a guess.
REQUIRED_SETTINGS = {"environment": "SM_ENVIRONMENT", "database_url": "SM_DATABASE_URL",
                     "redis_url": "SM_REDIS_URL", "secret_key": "SM_SECRET_KEY"}
# Names that are secrets whatever they hold, and names that only look like it.
SECRET_NAME = re.compile(r".*(PASSWORD|SECRET|TOKEN|API_KEY|PRIVATE_KEY|_DSN)$")
NOT_APP_SECRETS = frozenset({"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"})
DRIVERS = {"postgresql+asyncpg", "postgresql+psycopg", "postgresql+psycopg2", "postgresql"}
# Vite's build-time names that are not the app's own.
VITE_BUILTINS = frozenset({"MODE", "DEV", "PROD", "SSR", "BASE_URL"})


@dataclass
class Survey:
    repo: Path
    name: Fact
    root: Fact
    lock: Fact | None
    requires_python: Fact | None
    python: Fact | None
    web: Fact
    worker: Fact | None
    beat: Fact | None
    migrate: Fact
    release_commands: list[Fact]
    frontend: dict[str, Fact] | Fact
    settings: dict[str, Fact]
    secrets: list[Fact]
    health: dict[str, Fact]
    env: dict[str, Fact]
    other_names: dict[str, str] = field(default_factory=dict)


def survey(repo: Path) -> Survey:
    repo = repo.resolve()
    code = python_code.read(repo)
    web, root = _web(code, repo)
    root_dir = repo / root.value
    pyproject, pyproject_path = _pyproject(root_dir)
    worker = _celery(code, repo, root_dir)
    lock, requires = _lock(root_dir, repo, pyproject, pyproject_path)
    settings = _settings(code, repo)
    used = {fact.value for fact in settings.values()}
    secrets = [found(name, spot.path, repo, spot.line) for name, spot in sorted(code.env_names.items())
               if SECRET_NAME.fullmatch(name) and name not in used and name not in NOT_APP_SECRETS]
    others = {name: _where(spot, repo) for name, spot in sorted(code.env_names.items())
              if name not in used and name not in {s.value for s in secrets}}
    return Survey(
        repo=repo, name=_name(pyproject, pyproject_path, repo, root_dir), root=root, lock=lock,
        requires_python=requires, python=_python(requires), web=web, worker=worker,
        beat=_beat(code, repo) if worker else None, migrate=_migrate(repo, root_dir),
        release_commands=_seeds(repo, root_dir), frontend=_frontend(repo, root_dir),
        settings=settings, secrets=secrets, health=_health(code, repo), env=_env(settings),
        other_names=others)


def _where(spot: Spot, repo: Path) -> str:
    return f"{spot.path.relative_to(repo).as_posix()}:{spot.line}"


def _walk(repo: Path, name: str) -> list[Path]:
    return sorted((p for p in repo.rglob(name) if not SKIPPED_DIRS.intersection(p.relative_to(repo).parts[:-1])),
                  key=lambda p: (len(p.parts), str(p)))


def _project_dir(start: Path, repo: Path) -> Path:
    """The nearest directory from ``start`` up to the repository that is a Python project."""
    for directory in (start, *start.parents):
        if any((directory / marker).is_file() for marker in ("pyproject.toml", "requirements.txt", "setup.py")):
            return directory
        if directory == repo:
            break
    return repo


def _web(code, repo: Path) -> tuple[Fact, Fact]:
    candidates = sorted(code.apps["asgi"], key=lambda item: (item[2] is not None, len(item[1].path.parts)))
    if not candidates:
        return guessed("main:app", "no module-level FastAPI() assignment found; smship's default"), \
            guessed(".", "no ASGI app found; the repository itself")
    attribute, spot, via = candidates[0]
    root = _project_dir(spot.path.parent, repo)
    # uvicorn imports from the working directory, the project's: the module path starts there.
    module = python_code.module_of(spot.path, root)
    web = found(f"{module}:{attribute}", spot.path, repo, spot.line, via)
    relative = root.relative_to(repo).as_posix() or "."
    marker = next(m for m in ("pyproject.toml", "requirements.txt", "setup.py", "") if not m or (root / m).is_file())
    return web, found(relative, root / marker if marker else root, repo, None, "the Python project holding the ASGI app")


def _celery(code, repo: Path, root: Path) -> Fact | None:
    candidates = [c for c in code.apps["celery"] if root in c[1].path.parents]
    if not candidates:
        return None
    attribute, spot, via = sorted(candidates, key=lambda item: len(item[1].path.parts))[0]
    return found(f"{python_code.module_of(spot.path, root)}:{attribute}", spot.path, repo, spot.line, via)


def _beat(code, repo: Path) -> Fact | None:
    if not code.beat_schedules:
        return None
    spot = code.beat_schedules[0]
    return found(True, spot.path, repo, spot.line, "a beat schedule")


def _pyproject(root: Path) -> tuple[dict, Path | None]:
    path = root / "pyproject.toml"
    if not path.is_file():
        return {}, None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")), path
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}, path


def _line_of(path: Path, pattern: str) -> int | None:
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if re.match(pattern, line):
            return number
    return None


def _name(pyproject: dict, path: Path | None, repo: Path, root: Path) -> Fact:
    raw = (pyproject.get("project") or {}).get("name")
    name = app_name_from(raw or (repo.name if root == repo else root.name))
    if raw and path is not None:
        return found(name, path, repo, _line_of(path, r"\s*name\s*="), "the project's name")
    return guessed(name, "the directory's name")


def _lock(root: Path, repo: Path, pyproject: dict, pyproject_path: Path | None) -> tuple[Fact | None, Fact | None]:
    lock = None
    for directory in (root, *root.parents):
        if (directory / "uv.lock").is_file():
            where = "the uv workspace root's lock" if directory != root else "the project's uv lock"
            lock = found(Path("../" * len(root.relative_to(directory).parts) + "uv.lock").as_posix(),
                         directory / "uv.lock", repo, None, where)
            break
        if directory == repo:
            break
    if lock is None:
        for name in ("pylock.toml", "requirements.txt"):
            if (root / name).is_file():
                lock = found(name, root / name, repo)
                break
    requires = (pyproject.get("project") or {}).get("requires-python")
    if requires and pyproject_path is not None:
        return lock, found(requires, pyproject_path, repo, _line_of(pyproject_path, r"\s*requires-python"))
    if lock is not None and lock.value.endswith("uv.lock"):
        path = (root / lock.value).resolve()
        line = _line_of(path, r"requires-python\s*=")
        if line:
            value = path.read_text().splitlines()[line - 1].split("=", 1)[1].strip().strip('"')
            return lock, found(value, path, repo, line)
    return lock, None


def _python(requires: Fact | None) -> Fact | None:
    """A Python version for app.python when the lock wants more than the hosts' python3."""
    if requires is None:
        return None
    match = re.search(r">=?\s*3\.(\d+)", requires.value)
    if match and int(match.group(1)) > HOSTS_PYTHON[1]:
        return guessed(f"3.{match.group(1)}", f"requires-python is {requires.value}; Debian 12's python3 is 3.11")
    return None


def _migrate(repo: Path, root: Path) -> Fact:
    inis = _walk(repo, "alembic.ini")
    inside = [p for p in inis if root in p.parents] or inis
    if not inside:
        return guessed(False, "no alembic.ini found; declare your migration command if there is one")
    path = inside[0]
    cwd = Path(*([".."] * _depth_above(path.parent, root))) / path.parent.relative_to(_common(path.parent, root))
    return found({"command": "alembic upgrade head", "cwd": cwd.as_posix()}, path, repo)


def _common(a: Path, b: Path) -> Path:
    for directory in (b, *b.parents):
        if directory == a or directory in a.parents:
            return directory
    return Path("/")


def _depth_above(target: Path, root: Path) -> int:
    return len(root.relative_to(_common(target, root)).parts)


def _relative(target: Path, root: Path) -> str:
    """``target`` relative to ``root``, going up with ``..`` where it must."""
    common = _common(target, root)
    return (Path(*([".."] * _depth_above(target, root))) / target.relative_to(common)).as_posix() or "."


def _seeds(repo: Path, root: Path) -> list[Fact]:
    """A module named seed* with a ``__main__`` block: the first-user seeding a release runs."""
    facts = []
    for path in python_code.python_files(root):
        if path.stem.startswith("seed") and "__main__" in path.read_text(encoding="utf-8", errors="replace"):
            module = python_code.module_of(path, root)
            facts.append(guessed(f"python -m {module}",
                                 f"{path.relative_to(repo).as_posix()} looks like a seeding step; it must be safe to run every deploy"))
    return facts


def _frontend(repo: Path, root: Path) -> dict[str, Fact] | Fact:
    builds = []
    for path in _walk(repo, "package.json"):
        try:
            scripts = json.loads(path.read_text(encoding="utf-8")).get("scripts") or {}
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            continue
        if "build" in scripts:
            builds.append(path)
    if not builds:
        return guessed(False, "no package.json with a build script")
    package = builds[0]
    directory = package.parent
    facts = {"dir": found(_relative(directory, root), package, repo)}
    line = _line_of(package, r'\s*"build"\s*:')
    manager = next(((lock, command) for lock, command in
                    (("pnpm-lock.yaml", ("pnpm install --frozen-lockfile", "pnpm run build")),
                     ("yarn.lock", ("yarn install --frozen-lockfile", "yarn build")),
                     ("package-lock.json", ("npm ci", "npm run build"))) if (directory / lock).is_file()), None)
    if manager:
        facts["install"] = found(manager[1][0], directory / manager[0], repo)
        facts["build"] = found(manager[1][1], package, repo, line, "its build script")
    else:
        facts["install"] = found("npm install", package, repo, None, "no lock file beside it")
        facts["build"] = found("npm run build", package, repo, line, "its build script")
    facts.update(_vite(repo, root, directory))
    facts["env"] = _build_env(repo, directory)
    return facts


def _vite(repo: Path, root: Path, directory: Path) -> dict[str, Fact]:
    configs = [p for p in sorted(directory.glob("vite.config.*")) if p.is_file()]
    if not configs:
        return {"output": guessed(_relative(directory / "dist", root), "dist/, where most build tools write"),
                "url": guessed(f"/{directory.name}/", "a path of its own beside the API's"),
                "immutable": guessed("assets/", "hashed files under assets/, as most build tools name them"),
                "manifest": guessed(None, "no build manifest known")}
    config = configs[0]
    text = config.read_text(encoding="utf-8", errors="replace")
    facts = {}
    out = re.search(r"""outDir\s*:\s*["']([^"']+)["']""", text)
    output = (directory / out.group(1)).resolve() if out else directory / "dist"
    facts["output"] = found(_relative(output, root), config, repo, _line_of(config, r"\s*outDir")) if out else \
        guessed(_relative(output, root), "Vite's default outDir")
    base = re.search(r"""base\s*:\s*["'](/[^"']*)["']""", text)
    facts["url"] = found(base.group(1).rstrip("/") + "/", config, repo, _line_of(config, r"\s*base\s*:")) if base else \
        guessed(f"/{directory.name}/", "Vite's base is not set")
    facts["immutable"] = found("assets/", config, repo, None, "Vite's assetsDir")
    manifest = re.search(r"manifest\s*:\s*true", text)
    facts["manifest"] = found(".vite/manifest.json", config, repo, _line_of(config, r"\s*manifest\s*:")) if manifest \
        else guessed(None, "Vite writes no manifest without build.manifest")
    return facts


def _build_env(repo: Path, directory: Path) -> Fact:
    names: dict[str, str] = {}
    for path in sorted(directory.rglob("*")):
        parts = path.relative_to(directory).parts
        if not path.is_file() or SKIPPED_DIRS.intersection(parts) or path.suffix not in (".js", ".mjs", ".ts", ".jsx", ".tsx", ".vue", ".svelte"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in re.finditer(r"(?:process\.env|import\.meta\.env)\.([A-Z][A-Z0-9_]*)", text):
            if match.group(1) not in VITE_BUILTINS:
                names.setdefault(match.group(1), f"{path.relative_to(repo).as_posix()}:{text[:match.start()].count(chr(10)) + 1}")
    if not names:
        return guessed({}, "the front end reads no build-time variable")
    values = {name: "https://{domain}" if "URL" in name else "" for name in names}
    return Fact(values, ", ".join(f"{name} at {where}" for name, where in names.items()),
                "values guessed: an URL becomes the environment's own https://{domain}")


def _settings(code, repo: Path) -> dict[str, Fact]:
    names = code.env_names
    chosen: dict[str, Fact] = {}
    taken: set[str] = set()
    for setting, patterns in SETTING_PATTERNS.items():
        for pattern in patterns:
            matches = sorted(n for n in names if re.fullmatch(pattern, n) and n not in taken
                             and n not in NOT_APP_SECRETS)
            if matches:
                spot = names[matches[0]]
                chosen[setting] = found(matches[0], spot.path, repo, spot.line)
                taken.add(matches[0])
                break
        else:
            if setting in REQUIRED_SETTINGS:
                chosen[setting] = guessed(REQUIRED_SETTINGS[setting], "no such name read in the code; smship's default")
            else:
                chosen[setting] = guessed(None, "not read by the code")
    chosen["database_driver"] = _driver(code, repo, chosen["database_url"])
    return chosen


def _driver(code, repo: Path, url_name: Fact) -> Fact:
    """The driver form of the URL: the scheme the code writes near where it reads the URL."""
    known = [(scheme, spot) for scheme, spot in code.database_urls if scheme in DRIVERS]
    if not known:
        return guessed("postgresql", "no database URL in the code; plain postgresql:// suits most drivers")
    near = [item for item in known if url_name.where and url_name.where.startswith(
        item[1].path.relative_to(repo).as_posix() + ":")]
    scheme, spot = (near or known)[0]
    return found(scheme, spot.path, repo, spot.line)


def _health(code, repo: Path) -> dict[str, Fact]:
    routes = code.health_routes

    def endpoint(route: str, expect: str | None, spot: Spot) -> Fact:
        if expect == "true":
            return found({"path": route, "expect": "body", "body": "true"}, spot.path, repo, spot.line, "answers true")
        if expect == "status":
            return found(route, spot.path, repo, spot.line, "answers the smpy JSON status")
        return Fact({"path": route, "expect": "2xx"}, _where(spot, repo), "GUESS: any 2xx counts as healthy")

    ready = [r for r in routes if "ready" in r[0]] or [r for r in routes if "live" not in r[0]]
    live = [r for r in routes if "live" in r[0]] or ready
    if not ready:
        return {name: guessed(f"/health/{name}", "no health route found; smship's default, add one to the app")
                for name in ("live", "ready")}
    return {"live": endpoint(*live[0]), "ready": endpoint(*ready[0])}


def _env(settings: dict[str, Fact]) -> dict[str, Fact]:
    """Plain settings worth writing for a production environment."""
    env = {}
    if settings["environment"].where:
        env[settings["environment"].value] = guessed("production", "what the app calls production is yours to say")
    for setting, value in (("log_format", "json"), ("db_pool_size", "2"), ("db_max_overflow", "4")):
        if settings[setting].value is not None:
            env[settings[setting].value] = guessed(value, "small pools keep the fleet within Postgres' connections; "
                                                          "`smship check` judges the budget" if setting != "log_format"
                                                   else "one JSON object a line for the journal")
    return env
