"""The commands smship offers, one module per area."""
