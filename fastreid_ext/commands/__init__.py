"""The ``fastreid-ext`` console command (``pyproject.toml`` ``[project.scripts]``) and the code
behind ``tools/*.py``: each sub-command is one module with a ``main(argv)``.

    fastreid-ext train | eval | extract | index | search | export | show | check-weights | configs

``python tools/<tool>.py`` runs the same code from a source checkout.
"""
