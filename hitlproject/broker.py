"""The embedded default's broker: kombu's filesystem transport, with every message in place
whole before any consumer can see it.

kombu creates a message's file under its final name and writes it a moment later; a worker
polling the folder in between moves the empty file, fails to decode it and stops (seen: the
embedded default's worker died within minutes, losing the message). Here a message is written
under a name no consumer reads, then renamed into place, which is atomic.

A consumer takes the oldest message of its queue by renaming it, in its folder, to a name no
consumer reads (atomic, so one consumer has it), then reads and removes it. kombu's moves it
into the system's temporary folder, a copy and a delete when that is another filesystem, and
sorts every queue's files to find one queue's.
"""

import os
import shutil
import uuid
from queue import Empty
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

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

    def _get(self, queue):
        wanted = f"{queue}.msg"
        names = sorted(
            name
            for name in os.listdir(self.data_folder_in)
            if name.endswith(wanted) and name.partition(".")[2] == wanted
        )
        for name in names:
            taken = os.path.join(self.data_folder_in, f"{name}.taken")
            try:
                os.rename(os.path.join(self.data_folder_in, name), taken)
            except FileNotFoundError:  # another consumer took it first
                continue
            try:
                with open(taken, "rb") as file:
                    payload = file.read()
                if self.store_processed:
                    shutil.move(taken, os.path.join(self.processed_folder, name))
                else:
                    os.remove(taken)
            except OSError as error:
                raise ChannelError(f"Cannot read file {taken!r} from queue.") from error
            return loads(bytes_to_str(payload))
        raise Empty()


class Transport(filesystem.Transport):
    Channel = Channel


TRANSPORT_ALIASES[SCHEME] = "hitlproject.broker:Transport"
