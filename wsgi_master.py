"""WSGI entry point of the master: `gunicorn wsgi_master:app`."""

from gusher.app import create_master_app

app = create_master_app()
