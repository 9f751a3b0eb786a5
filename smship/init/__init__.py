"""``smship init``: a starting inventory written by reading an existing app.

``survey`` reads the repository (never runs any of it) and returns what it
found, each fact with the file and line it came from or marked as a guess;
``render`` turns that into an inventory whose comments say which is which.
"""

from smship.init.render import render
from smship.init.survey import Survey, survey

__all__ = ["Survey", "render", "survey"]
