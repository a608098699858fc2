"""The embedded default's broker: kombu's filesystem transport, with every message in place
whole before any consumer can see it.

kombu creates a message's file under its final name and writes it a moment later; a worker
polling the folder in between moves the empty file, fails to decode it and stops (seen: the
embedded default's worker died within minutes, losing the message). Here a message is written
under a name no consumer reads, then renamed into place, which is atomic.
"""

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

SCHEME = "hitl-filesystem"


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        being_written = f"{final}.part"  # consumers read only names ending ".<queue>.msg"
        try:
            with open(being_written, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))
            os.replace(being_written, final)
        except OSError as error:
            raise ChannelError(f"Cannot add file {final!r} to directory") from error


class Transport(filesystem.Transport):
    Channel = Channel


TRANSPORT_ALIASES[SCHEME] = "hitlproject.broker:Transport"
