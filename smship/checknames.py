"""The names of the checklist's checks, importable without the checks themselves.

The inventory validates ``checks.skip`` against them; the checks import
smship modules that import the inventory, so the names live apart.
``smship.checklist.checks`` asserts they match its list.
"""

CHECK_NAMES = ("hosts", "hosts-os", "environment", "secret-key", "database-url", "migrations", "frontend", "admin",
               "proxy-headers", "tls", "firewall", "log-format", "connection-budget", "beat", "drain", "sm010")
