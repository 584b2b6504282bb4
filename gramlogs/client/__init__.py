"""``gramlogs logs``: a client of any gramlogs server over HTTP (standard library only).

``remote`` speaks HTTP (pages, the live tail), ``sse`` parses server-sent events, ``output``
prints entries, ``command`` is the subcommand. It never imports the server's layers.
"""
