"""TCP collectors for station protocols: HJ 212-2017 and SL 651-2014 (``python -m ingest.tcp``).

One process listens for both protocols. Each connection gets its own framer, limits and
reply queue; every valid frame becomes one ``ReadingBatch`` on ``readings.raw`` and every
refusal one ``DeadLetter`` on ``readings.deadletter``; a station's reply leaves only after
Kafka acknowledged what its frame produced.
"""
