"""Client side of a sandboxed kernel: bounded output.

``CappedIOPubChannel`` stops passing a kernel's output on past a byte cap or a
message cap (per notebook and per cell), leaving a note in the notebook where it
cut and interrupting a flooding cell; ``_BoundedSockets`` refuses single ZMQ
messages over a size; ``SandboxKernelClient`` is the kernel client that uses
both, with the caps the kernel manager's traits give it.
"""
from __future__ import annotations

import asyncio

import zmq
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel

_OUTPUT_TYPES = {"stream", "display_data", "execute_result", "update_display_data", "error",
                 "comm_open", "comm_msg", "comm_close", "clear_output"}


def _content_size(content) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, dict):
        return sum(_content_size(v) + len(k) for k, v in content.items())
    if isinstance(content, (list, tuple)):
        return sum(_content_size(v) for v in content)
    return 8


# The note that takes the place of dropped output, in English unless the course sets its own words
# (``c.SandboxKernelManager.output_notices``): ``cut`` wraps one of the others ({what}).
OUTPUT_NOTICES = {
    "cut": "\n[output truncated: {what}; the rest was not saved]\n",
    "notebook_bytes": "this notebook wrote more than {mb} MB",
    "notebook_messages": "this notebook sent more than {count} outputs",
    "cell_messages": "this cell sent more than {count} outputs",
}


class CappedIOPubChannel(AsyncZMQSocketChannel):
    """IOPub channel that stops passing output on once a kernel has sent more
    than ``limit`` bytes, or more than ``max_messages`` output messages in all or
    ``max_cell_messages`` for one cell, so that a flood (of bytes, or of tiny
    messages: each one costs the kernel and nbclient time and the notebook a
    JSON object) cannot fill the grader's memory (nbgrader's LimitOutput only
    trims the notebook afterwards).

    Past a cap:
    * the first dropped output of a cell (or of the notebook) becomes a note
      that says what was cut (``notices``: the kernel manager's ``output_notices``,
      the course's words);
    * a cell past its own cap is interrupted once (``on_flood``, set by the
      kernel manager): the flood costs its author the rest of that cell, not
      minutes of the grader's time reading messages it drops (nbgrader fails a
      whole submission whose output is still arriving 4 s after its cell
      ended); a kernel that ignores the interrupt still meets the cell timeout.
      The interrupt may land in the next cell when the flood ends just then:
      only a flooding notebook can see that;
    * one error per cell still passes, shortened: nbgrader scores a test cell
      by its error output, so a flood must never turn a failing test into a
      pass."""

    limit = 32 * 1024 * 1024
    max_messages = 20_000
    max_cell_messages = 5_000
    used = 0
    notified = False  # the byte or notebook-message cap was announced
    on_flood = None   # called once per cell that goes past its own cap (interrupts the kernel)
    notices = OUTPUT_NOTICES  # what the notes say (SandboxKernelManager.output_notices)

    def _cut(self, msg: dict, text: str) -> dict:
        msg["msg_type"] = msg["header"]["msg_type"] = "stream"
        msg["content"] = {"name": "stderr", "text": self.notices["cut"].format(what=text)}
        return msg

    def _flooded(self, cell: str) -> None:
        if cell in self._interrupted or self.on_flood is None:
            return
        self._interrupted.add(cell)
        result = self.on_flood()
        if asyncio.iscoroutine(result):
            self._tasks.add(asyncio.ensure_future(result))  # (a reference, so it is not collected)

    def _cap(self, msg: dict) -> dict:
        mtype = msg.get("msg_type") or msg.get("header", {}).get("msg_type")
        if mtype not in _OUTPUT_TYPES:
            return msg
        if not hasattr(self, "_per_cell"):
            self._per_cell, self._cell_notified, self.messages = {}, set(), 0
            self._errors, self._interrupted, self._tasks = set(), set(), set()
        cell = (msg.get("parent_header") or {}).get("msg_id", "")
        count = self._per_cell[cell] = self._per_cell.get(cell, 0) + 1
        self.used += _content_size(msg.get("content", {}))
        over_bytes = self.used > self.limit
        over_cell = count > self.max_cell_messages
        # the notebook's cap counts the messages passed on (a cell cut at its own
        # cap does not use up the rest of the notebook's)
        over_notebook = not over_cell and self.messages >= self.max_messages
        if not (over_bytes or over_notebook or over_cell):
            self.messages += 1
            return msg
        if over_cell:
            self._flooded(cell)  # (not for the notebook's caps: later cells' first outputs would interrupt them)
        if mtype == "error" and cell not in self._errors:
            self._errors.add(cell)
            content = msg.get("content", {})
            tb = [str(line)[:2000] for line in (content.get("traceback") or [])[-5:] if isinstance(line, str)]
            msg["content"] = {"ename": str(content.get("ename", "Error"))[:200],
                              "evalue": str(content.get("evalue", ""))[:2000], "traceback": tb}
            return msg
        announce = mtype in ("stream", "display_data", "execute_result", "update_display_data")
        if announce and (over_bytes or over_notebook) and not self.notified:
            self.notified = True
            self._cell_notified.add(cell)
            return self._cut(msg, self.notices["notebook_bytes"].format(mb=self.limit // 2**20)
                             if over_bytes else self.notices["notebook_messages"].format(count=self.max_messages))
        if announce and over_cell and cell not in self._cell_notified:
            self._cell_notified.add(cell)
            return self._cut(msg, self.notices["cell_messages"].format(count=self.max_cell_messages))
        # past a limit: turn it into a message nbclient ignores
        msg["msg_type"] = msg["header"]["msg_type"] = "execute_input"
        msg["content"] = {"code": "", "execution_count": None}
        return msg

    async def get_msg(self, timeout: float | None = None):
        return self._cap(await super().get_msg(timeout))

    async def get_msgs(self):
        return [self._cap(m) for m in await super().get_msgs()]


class _BoundedSockets:
    """Refuse single ZMQ messages larger than ``max_message_bytes``."""

    max_message_bytes = 256 * 1024 * 1024

    def _create_connected_socket(self, channel, identity=None):
        url = self._make_url(channel)
        from jupyter_client.connect import channel_socket_types

        sock = self.context.socket(channel_socket_types[channel])
        sock.linger = 1000
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        # the kernel binds its sockets a few ms after start: retry every 10 ms, not 100
        sock.setsockopt(zmq.RECONNECT_IVL, 10)
        if identity:
            sock.identity = identity
        if getattr(self, "curve_publickey", None) is not None:
            sock.curve_secretkey = self.curve_secretkey
            sock.curve_publickey = self.curve_publickey
            sock.curve_serverkey = self.curve_publickey
        sock.connect(url)
        return sock


class SandboxKernelClient(_BoundedSockets, AsyncKernelClient):
    iopub_channel_class = CappedIOPubChannel  # type: ignore[assignment]
    output_limit = 32 * 1024 * 1024
    output_messages = CappedIOPubChannel.max_messages
    output_cell_messages = CappedIOPubChannel.max_cell_messages
    on_flood = None  # set by SandboxKernelManager.client: interrupts the kernel
    output_notices = None  # set by SandboxKernelManager.client: the course's words for the notes

    @property
    def iopub_channel(self):
        channel = super().iopub_channel
        channel.limit = self.output_limit
        channel.max_messages = self.output_messages
        channel.max_cell_messages = self.output_cell_messages
        channel.on_flood = self.on_flood
        channel.notices = {**OUTPUT_NOTICES, **(self.output_notices or {})}
        return channel
