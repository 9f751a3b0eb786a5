"""The inventory: one YAML file describing the app and its environments.

Everything here is checked before smship opens any connection.  Errors name
the file, the line where it is known, the field path and the reason, one
problem per line, so a typo costs seconds rather than a half-applied deploy.

By concern: :mod:`~smship.inventory.rules` checks single values,
:mod:`~smship.inventory.sections` models an environment's sections,
:mod:`~smship.inventory.schema` the app, hosts, environments (with the names
derived from them, such as the app's path and user) and the inventory,
:mod:`~smship.inventory.loading` reads the YAML and reports problems as
``FILE:LINE: field.path: reason``.
"""

from smship.inventory.loading import InventoryError, LoadedInventory, field_path, load, parse
from smship.inventory.rules import ROLES, SECRET_KEYS, Role, check_address, split_endpoint
from smship.inventory.schema import App, Environment, Host, Inventory
from smship.inventory.sections import (SSH, TLS, Backup, Beat, Checks, Db, Endpoint, Firewall, Health, Lb, Pooler,
                                       Secrets, Storage, Web, Worker)

__all__ = [
    "App", "Backup", "Beat", "Checks", "Db", "Endpoint", "Environment", "Firewall", "Health", "Host", "Inventory",
    "InventoryError", "Lb", "LoadedInventory", "Pooler", "ROLES", "Role", "SECRET_KEYS", "SSH", "Secrets", "Storage", "TLS",
    "Web", "Worker", "check_address", "field_path", "load", "parse", "split_endpoint",
]
