"""WSGI entry point of the slave: `gunicorn -c gunicorn.conf.py wsgi_slave:app`."""

from gusher.app import create_slave_app

app = create_slave_app()
