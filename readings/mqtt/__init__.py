"""Live readings from MQTT (`manage.py ingest_mqtt`): messages turned into writes, committed in
batches, acknowledged after.

A message is `{"time": ..., "value": ...}` or `{"readings": [{"time": ..., "value": ...}, ...]}`
on `.../meters/<meter>/readings`; its rows are cleaned by the rules of a file import. Messages are
taken in batches; each is cleaned alone (one bad message never spoils the others), the good ones
are stored with `readings.writes.live.store_writes` and the bad ones recorded as RejectedMessage
rows in the same transaction, and only then is every message of the batch acknowledged. A consumer
stopped at any moment therefore loses nothing: what it had not acknowledged the broker delivers
again, and a message delivered twice changes nothing (upsert; a rejection is recorded once per
payload).

- `batches`: messages as received, taken in batches, parsed, cleaned and committed.
- `consumer`: the broker connection (a persistent session) and the acknowledgements.
"""
