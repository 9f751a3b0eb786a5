"""Looking at a running environment: ``status`` (and later ``check``, ``logs``)."""
