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
COPY stationview stationview
COPY simulator simulator
ARG EXTRAS=""
RUN pip install --no-cache-dir ".${EXTRAS}"
# The services run unprivileged; the state dir (the worker's volume) is theirs. A named volume
# mounted there takes this owner on first use.
RUN useradd --system --uid 10001 --home-dir /var/lib/stationflow stationflow \
    && install -d -o stationflow -g stationflow /var/lib/stationflow
USER stationflow
ENV STATIONFLOW_STATE_DIR=/var/lib/stationflow
ENTRYPOINT ["stationflow"]
