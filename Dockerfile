FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stationflow stationflow
COPY ingest ingest
COPY streams streams
COPY alerts alerts
COPY devices devices
ARG EXTRAS=""
RUN pip install --no-cache-dir ".${EXTRAS}"
ENV STATIONFLOW_STATE_DIR=/var/lib/stationflow
ENTRYPOINT ["stationflow"]
