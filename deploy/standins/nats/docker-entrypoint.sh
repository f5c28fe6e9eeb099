#!/bin/sh
# The official nats image's entrypoint contract: flags go to nats-server.
set -e
if [ "${1#-}" != "$1" ]; then
  set -- nats-server "$@"
fi
exec "$@"
