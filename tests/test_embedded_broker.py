"""The embedded default's broker (kombu's filesystem transport, as hitlproject.broker sets it
up) never hands a consumer a message still being written: with senders racing a consumer,
every message arrives whole, once."""

import multiprocessing
import time

from kombu import Connection, Exchange, Queue

from hitlproject.broker import SCHEME

MESSAGES_PER_SENDER = 300
SENDERS = 3


def options(folder) -> dict:
    return {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "control_folder": str(folder),
        "store_processed": False,
        "polling_interval": 0,
    }


def send(folder, sender: int) -> None:
    queue = Queue("hitl", Exchange("hitl"), "hitl")
    with Connection(f"{SCHEME}://localhost//", transport_options=options(folder)) as connection:
        producer = connection.Producer()
        for number in range(MESSAGES_PER_SENDER):
            producer.publish(
                {"sender": sender, "number": number, "padding": "x" * 4000},
                exchange=queue.exchange,
                routing_key="hitl",
                declare=[queue],
                serializer="json",
            )


def test_every_message_arrives_whole_while_senders_race_the_consumer(tmp_path):
    with Connection(f"{SCHEME}://localhost//", transport_options=options(tmp_path)) as connection:
        channel = connection.channel()
        channel.queue_declare("hitl")
        senders = [
            # Spawned, never forked (tests.spawned says why).
            multiprocessing.get_context("spawn").Process(target=send, args=(tmp_path, sender))
            for sender in range(SENDERS)
        ]
        for sender in senders:
            sender.start()
        received = []
        deadline = time.monotonic() + 120
        while len(received) < SENDERS * MESSAGES_PER_SENDER and time.monotonic() < deadline:
            message = channel.basic_get("hitl")  # decoding a half-written file would raise
            if message is not None:
                received.append((message.payload["sender"], message.payload["number"]))
                message.ack()
            elif not any(sender.is_alive() for sender in senders) and not any(
                name.endswith(".msg") for name in (p.name for p in tmp_path.iterdir())
            ):
                break
        for sender in senders:
            sender.join(timeout=60)

    assert sorted(received) == [
        (sender, number) for sender in range(SENDERS) for number in range(MESSAGES_PER_SENDER)
    ]
