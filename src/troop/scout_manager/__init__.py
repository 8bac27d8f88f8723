"""``scout_manager``: the plugin that stops, restarts and upgrades the Troop scout that runs it.

STDLIB ONLY. It ships as a Python zipapp (see :mod:`troop.scout_manager.build`) and runs as
a program of its own, beside and after the scout: it must work while the ``troop`` package
is being replaced under it, so it imports nothing of Troop and nothing outside the
standard library. ``build.py`` is the exception: it runs at build time and is not shipped.
"""

# Replaced in the zipapp by build.py with the version it is built as.
VERSION = "0.0.0+source"
