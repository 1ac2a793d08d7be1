#!/bin/sh
# First start of the Citus coordinator (docker-compose.yml, profile citus), after the image has
# created the extension: the password the nodes use to reach each other (pg_dist_authinfo, node 0:
# every node), the coordinator's own name, then each worker of CITUS_WORKERS registered in the
# database. Compose starts the coordinator once the workers are healthy; the project's migrations,
# run later by the init job, distribute the readings over them.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v role="$POSTGRES_USER" -v authinfo="password=$POSTGRES_PASSWORD" <<'SQL'
INSERT INTO pg_dist_authinfo (nodeid, rolename, authinfo) VALUES (0, :'role', :'authinfo');
SELECT citus_set_coordinator_host('citus-coordinator', 5432);
SQL
for worker in $(echo "$CITUS_WORKERS" | tr ',' ' '); do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -v worker="$worker" <<'SQL'
SELECT citus_add_node(:'worker', 5432);
SQL
done
