# The LINBORG image: the forecasting exporter (`linborg serve`, the default command) and the
# synthetic fleet (`linborg generate serve`). docker-compose.yml runs both; docs/docker.md.
#
# Exact tag, no digest: a patch release of Python 3.11 on Debian 12, the Python the tests run on.
FROM python:3.11.9-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# torch first, the CPU build from PyTorch's own index (the pin of scripts/bootstrap.sh). The
# project asks for torch>=2.2, which this satisfies; left to PyPI, pip would pull the CUDA build
# and several GB of NVIDIA libraries the exporter never uses.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

# The project, from the files pyproject.toml needs (its packages and the README it names).
WORKDIR /src
COPY pyproject.toml README.md ./
COPY linborg ./linborg
COPY generator ./generator
COPY trainer ./trainer
COPY exporter ./exporter
COPY grafana ./grafana
# Installed as package data (linborg.prometheus, linborg.alertmanager, linborg.models).
COPY prometheus ./prometheus
COPY alertmanager ./alertmanager
COPY models/__init__.py ./models/
COPY models/default ./models/default
RUN pip install .

# The shipped model and a default configuration (compose mounts deploy/exporter.yml over it).
# The checkout may hold the weights with mode 0600; make them readable by the runtime user.
WORKDIR /opt/linborg
COPY models/default ./models/default
COPY deploy/exporter.yml /etc/linborg/exporter.yml
RUN chmod -R a+rX /opt/linborg/models /etc/linborg

# Run as an unprivileged user. Numeric, so that runtimes checking "non-root" can tell.
# /data holds the generator's backfill file (a volume in docker-compose.yml).
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/linborg \
        --shell /usr/sbin/nologin linborg \
    && mkdir /data && chown linborg:linborg /data
USER 10001:10001

# Python as PID 1 ignores SIGTERM unless it installs a handler; SIGINT always stops both
# commands cleanly (KeyboardInterrupt).
STOPSIGNAL SIGINT
EXPOSE 9105 9106
ENTRYPOINT ["linborg"]
CMD ["serve", "--config.file=/etc/linborg/exporter.yml", "--web.listen-address=0.0.0.0:9106"]
