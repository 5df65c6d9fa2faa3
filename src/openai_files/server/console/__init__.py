"""The web console: its static files, the headers that guard them, and the few routes the
`/v1` API lacks (the console's configuration, usage, download links, who an admin key
is).

    headers.py   the security headers on every answer of a console path (a middleware)
    assets.py    the page and its static files, read once, served from memory by hash
    links.py     download links: signed, expiring, checked; and kept out of the access log
    config.py    what the console is told before a key is entered: every limit it keeps to
    routes.py    the console's routes: the page, its assets, the console API, downloads

The page itself is plain JavaScript in `../static` (no build step): `app.js` wires the
page's parts, each a module of its own. It reads every limit it needs from
`GET /console/api/config`, which config.py makes from the server's settings.
"""
