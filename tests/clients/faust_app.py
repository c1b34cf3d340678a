"""A Faust (faust-streaming) worker for test_faust.py: counts words per key
in a table, whose changelog topic Faust creates and restores from, and sends
each new count to an output topic. Run as `python faust_app.py worker`;
the broker and topic names come from the environment."""

import os

import faust

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

words = app.topic(WORDS, key_serializer="raw", value_serializer="raw", partitions=PARTITIONS)
counts_topic = app.topic(COUNTS, key_serializer="raw", value_serializer="raw", partitions=PARTITIONS)
table = app.Table("counts", default=int, partitions=PARTITIONS)


@app.agent(words)
async def count(stream):
    async for event in stream.events():
        key = event.key.decode()
        table[key] += 1
        await counts_topic.send(key=key.encode(), value=str(table[key]).encode())


if __name__ == "__main__":
    app.main()
