"""Postgres backups with pgBackRest: WAL archiving and base backups to S3, verify and restore."""
