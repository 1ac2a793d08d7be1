"""The write side: every way readings get into the stores, cleaned by one set of rules and stored
by one upsert.

- `rows`: the rules every writer cleans rows by (times, values, repeated hours, duplicates).
- `imports`: CSV files into the relational store (import) or a series store (seed), each recorded
  as an ImportRun.
- `live`: readings as meters send them (WriteReadings, the HTTP write, MQTT batches).
- `counts`: what a write did, one record for all of them.
- `changes`: the change log that WatchReadings serves, and its pruning.

Whatever the writer, rows reach the relational store through `readings.sources.sql.upsert`.
"""
