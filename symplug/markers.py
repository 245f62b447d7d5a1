"""pluggy markers for symplug hooks (kept tiny, as tox and conda do).

Plugins write::

    from symplug import hookimpl

    @hookimpl
    def symplug_domains():
        ...
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "symplug"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
