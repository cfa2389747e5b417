"""Project tools; installed as ``humans.tools`` (``main_job`` is the ``humans`` command)."""
