"""The dashboard: server-rendered pages (Jinja2 templates in templates/) and the few static assets they use
(static/: one stylesheet, one small script for live updates), served by `shipyard serve` at `/` and built into
the package. Nothing comes from a CDN: the pages work with no network but the server's.

session.py is the login model (the API token in an HttpOnly cookie, a CSRF token derived from it); charts.py
draws the analysis and trend charts as inline SVG; views.py gathers what a page shows from the store (indexed
queries only); routes.py is the router api/app.py mounts.
"""
