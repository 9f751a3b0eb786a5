"""``smship check``: the production checklist as automated checks."""
