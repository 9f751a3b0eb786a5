"""Reference app that keeps the smpy deployment contracts."""
