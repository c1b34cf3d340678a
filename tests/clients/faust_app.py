"""A Faust (faust-streaming) worker for test_faust.py: counts words per key
in a table, whose changelog topic Faust creates and restores from, and sends
each new count to an output topic. Run as `python faust_app.py worker`;
the broker and topic names come from the environment."""

import asyncio
import os

import faust
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

BOOTSTRAP = os.environ["RUNNEL_BOOTSTRAP"]
APP_ID = os.environ["FAUST_APP_ID"]
WORDS = os.environ["FAUST_WORDS"]
COUNTS = os.environ["FAUST_COUNTS"]
PARTITIONS = 3

app = faust.App(
    APP_ID,
    broker=f"kafka://{BOOTSTRAP}",
    store="memory://",
    topic_partitions=PARTITIONS,
    topic_replication_factor=1,
    broker_commit_interval=0.5,
    processing_guarantee=os.environ.get("FAUST_GUARANTEE", "at_least_once"),
    # A killed worker's partitions move after 6 s, not Faust's default 60.
    broker_session_timeout=6.0,
    broker_heartbeat_interval=1.0,
)

# Faust's commit task runs beside its agents: it picks the offsets of the
# events acked so far, then commits the transaction, and an event processed
# meanwhile puts its changelog record into that transaction without its
# offset, so after a crash it is counted twice (seen: a restored count one
# above the words before the committed offset). Transaction RPCs are Raft
# writes here, slower than Kafka's, which widens that window. Processing
# and committing take turns, and the commit first hands the buffered
# changelog records to the producer, so a transaction holds exactly the
# events whose offsets it commits.
turns = asyncio.Lock()
_commit_tps = Consumer._commit_tps


async def _commit_tps_in_turn(self, tps, start_new_transaction):
    async with turns:
        await self.app.producer.buffer.flush()
        return await _commit_tps(self, tps, start_new_transaction)


Consumer._commit_tps = _commit_tps_in_turn

# Exactly once, Faust takes a changelog partition's highwater, which its
# table recovery checks the kept table against, from the last stable offset
# its consumer cached from fetch responses. After a rebalance that is None
# (read as -1) until the partition's first fetch lands, and recovery starting
# before it stops the worker with a ConsistencyError (a table kept "past"
# offset -1; faust-streaming/faust#158). For those partitions ask the
# broker instead: ListOffsets, read_committed, as Faust does at least once.
_highwaters = AIOKafkaConsumerThread._highwaters


async def _highwaters_or_asked(self, partitions):
    found = dict(await _highwaters(self, partitions))
    unknown = [tp for tp, offset in found.items() if offset is None]
    if unknown:
        found.update(await self._ensure_consumer().end_offsets(unknown))
    return found


AIOKafkaConsumerThread._highwaters = _highwaters_or_asked

words = app.topic(WORDS, key_serializer="raw", value_serializer="raw", partitions=PARTITIONS)
counts_topic = app.topic(COUNTS, key_serializer="raw", value_serializer="raw", partitions=PARTITIONS)
table = app.Table("counts", default=int, partitions=PARTITIONS)


@app.agent(words)
async def count(stream):
    async for event in stream.events():
        # The event is acked when this body returns, before a commit waiting
        # for its turn runs.
        async with turns:
            key = event.key.decode()
            table[key] += 1
            await counts_topic.send(key=key.encode(), value=str(table[key]).encode())


if __name__ == "__main__":
    app.main()
