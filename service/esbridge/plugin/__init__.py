"""The Nagios/Icinga plugin ``check_esbridge``.

``check_esbridge.py`` is a single, standard-library-only file: it can be copied on its own to a
monitoring host's plugin folder and run with ``python3 -I -S``. Nothing here may import it eagerly.
"""
