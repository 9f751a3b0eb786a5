"""``smship rotate-secret``: a new key stored, written to every host, units restarted."""
