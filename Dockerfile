# One image for every stationflow service (compose picks the command: registry, ingest, tcp,
# streams, alerts, opendata, simulate, broker-init). tests/unit/test_compose.py checks that every
# package pyproject.toml installs is copied here.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stationflow stationflow
COPY ingest ingest
COPY streams streams
COPY alerts alerts
COPY devices devices
COPY opendata opendata
COPY simulator simulator
ARG EXTRAS=""
RUN pip install --no-cache-dir ".${EXTRAS}"
ENV STATIONFLOW_STATE_DIR=/var/lib/stationflow
ENTRYPOINT ["stationflow"]
