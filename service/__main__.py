"""`python -m service` starts the prediction service under gunicorn (see service.server)."""

from service.server import main

raise SystemExit(main())
