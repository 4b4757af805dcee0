"""The live local dashboard (``expertrack ui``): a read-only HTTP API over the store and the page it serves.

Importing this package loads nothing heavy; ``create_app`` (in ``app``) pulls in Starlette, ``serve`` (in
``server``) uvicorn. The page's scripts and plotly.min.js are served from this package and the installed
``plotly`` package, so it works with no internet.
"""
