"""Deploys and rollbacks: ship a release, migrate once, roll with health gates."""
