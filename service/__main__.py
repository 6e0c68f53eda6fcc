"""`python -m service` starts the prediction service under gunicorn (see service.server)."""

import gc

# No collections while the server's long-lived objects are built; service.server turns
# the collector back on once the app and the model are loaded (IrisServer.load).
gc.disable()

from service.server import main  # noqa: E402 - imported with the collector off

raise SystemExit(main())
