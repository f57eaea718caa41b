"""The headless commands (`slipstream ask`, `watch`, `test`, `apply-patch`): front-ends over the services.

Only `app.main` imports these; nothing here imports Qt or the server.
"""
