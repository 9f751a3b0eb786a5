"""Everything one command needs to know about the environment it acts on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from smship.inventory import App, Environment, LoadedInventory, load
from smship.output import Reporter
from smship.settings import Settings


@dataclass
class EnvContext:
    """The validated inventory, the chosen environment and the reporter."""

    inventory: LoadedInventory
    name: str
    env: Environment
    settings: Settings
    reporter: Reporter

    @classmethod
    def open(cls, name: str, inventory_path: Path | None = None, output: str | None = None) -> "EnvContext":
        settings = Settings()
        if output:
            settings = settings.model_copy(update={"output": output})
        loaded = load(Path(inventory_path or settings.inventory))
        env = loaded.environment(name)
        env = env.model_copy(update={"ssh": settings.apply_to(env.ssh)})
        return cls(loaded, name, env, settings, Reporter(settings.output))

    @property
    def app(self) -> App:
        return self.inventory.app

    @property
    def app_path(self) -> str:
        return self.env.resolved_app_path(self.app)

    @property
    def app_user(self) -> str:
        return self.env.resolved_app_user(self.app)
