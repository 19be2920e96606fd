#!/bin/sh
# Compose's Mosquitto start: create the dynamic-security store with the admin login from the
# env file on the first start, then run the broker. The store lives on the data volume, so the
# clients and roles the registry and broker-init create survive restarts; changing
# MOSQUITTO_ADMIN_PASSWORD later does not change an existing store (delete the volume, or use
# `mosquitto_ctrl dynsec setClientPassword`). The compose wiring test runs this script too,
# with MOSQUITTO_DYNSEC_STORE and MOSQUITTO_CONF pointing at its own files.
set -eu
store="${MOSQUITTO_DYNSEC_STORE:-/mosquitto/data/dynsec.json}"
conf="${MOSQUITTO_CONF:-/mosquitto/config/mosquitto.conf}"
: "${MOSQUITTO_ADMIN_USER:?set it in .env}"
: "${MOSQUITTO_ADMIN_PASSWORD:?set it in .env}"
if [ ! -s "$store" ]; then
    mosquitto_ctrl dynsec init "$store" "$MOSQUITTO_ADMIN_USER" "$MOSQUITTO_ADMIN_PASSWORD"
    # the image's entrypoint chowned /mosquitto before this file existed; the broker drops
    # to user mosquitto and must be able to rewrite the store
    if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
        chown mosquitto:mosquitto "$store"
    fi
fi
exec mosquitto -c "$conf"
