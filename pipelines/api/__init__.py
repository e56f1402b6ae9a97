"""The consent API (DESIGN section 10): FastAPI on uvicorn over the published state.

`app.create_app` builds the application; `server.serve` runs it (`consent-center serve`). The
routers are thin: every answer comes from the same functions the CLI calls
(pipelines/answers.py) or from the services here (keys, revocations, changes).
"""
