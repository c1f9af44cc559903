"""A backend that lives outside the project, for `--backend custom_backend.Recording`.

Task processes run the flow file from this directory, so this module is importable
there as `custom_backend`.
"""

from backends.local import Local


class Recording(Local):
    """The local backend under another name: proves `--backend` reaches the steps."""
