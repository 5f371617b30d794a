"""`realjudge serve`: the HTTP API and the web page (install with the `serve` extra).

`realjudge.serve.app.create_app(models, limits)` builds the service; `realjudge.serve.limits.Limits`
holds its bounds. Nothing is imported here, so the CLI starts without FastAPI installed.
"""
