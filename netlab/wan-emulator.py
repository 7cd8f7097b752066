#!/usr/bin/env python3
"""A wide-area path between two TUN devices, in user space (this kernel has no netem).

Each direction has its own one-way delay, bottleneck rate with a drop-tail queue, random loss
and blackhole. Real TCP runs on top: the hosts' kernels see a path with a round trip, a queue
that fills, and losses, and react to them as they would to a real one.

    wan-emulator.py TUN_A TUN_B '{"delayMs": 25, "rateMbit": 20, "queueMs": 200, "loss": 0}'

The settings apply to both directions. Both TUN devices are created here (they vanish when this
process exits); the caller moves them into namespaces and gives them addresses. Prints one JSON
line, {"ready": true}, once both are open. Then forwards until stdin closes or SIGTERM. Commands
on stdin, one JSON object per line, each answered by one JSON line carrying the same "id":

    {"id": 1, "set": {"blackhole": true}}     change settings (both directions; "aToB"/"bToA"
                                              objects inside "set" change one direction only)
    {"id": 2, "stats": true}                  counters of each direction

A packet's path through one direction: blackhole (dropped), random loss (dropped), the
bottleneck (dropped when the queue already holds more than queueMs of sending at the rate;
otherwise it leaves the bottleneck when everything before it has been sent), then the delay.
Turning the blackhole on also drops what is queued or in flight, as when a radio link goes.
Standard library only.
"""
import errno
import fcntl
import heapq
import json
import os
import random
import selectors
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65536
# Packets read from one device before looking at the other and at the clock again.
READ_BURST = 64

SETTING_KEYS = ("delayMs", "rateMbit", "queueMs", "loss", "blackhole")


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


class Direction:
    """One way through the path: what it does to packets, and what it did."""

    def __init__(self, name, out_fd, rng):
        self.name = name
        self.out_fd = out_fd
        self.rng = rng
        self.delay = 0.0
        self.rate = 0.0  # bits per second; 0: no bottleneck
        self.queue_seconds = 0.0
        self.loss = 0.0
        self.blackhole = False
        # When the bottleneck has sent everything it holds.
        self.busy_until = 0.0
        # (deliver_at, sequence, packet): a heap, since a change of delay may reorder.
        self.pending = []
        self.sequence = 0
        self.counters = {
            "packets": 0, "bytes": 0, "delivered": 0, "deliveredBytes": 0,
            "droppedLoss": 0, "droppedQueue": 0, "droppedBlackhole": 0, "droppedWrite": 0,
            "maxQueueMs": 0.0,
        }

    def configure(self, settings):
        if "delayMs" in settings:
            self.delay = float(settings["delayMs"]) / 1000
        if "rateMbit" in settings:
            self.rate = float(settings["rateMbit"]) * 1e6
        if "queueMs" in settings:
            self.queue_seconds = float(settings["queueMs"]) / 1000
        if "rateMbit" in settings or "queueMs" in settings:
            self.counters["maxQueueMs"] = 0.0  # a new bottleneck: its own longest wait
        if "loss" in settings:
            self.loss = float(settings["loss"])
        if "blackhole" in settings:
            self.blackhole = bool(settings["blackhole"])
            if self.blackhole:
                self.counters["droppedBlackhole"] += len(self.pending)
                self.pending.clear()
                self.busy_until = 0.0

    def arrive(self, packet, now):
        c = self.counters
        c["packets"] += 1
        c["bytes"] += len(packet)
        if self.blackhole:
            c["droppedBlackhole"] += 1
            return
        if self.loss > 0 and self.rng.random() < self.loss:
            c["droppedLoss"] += 1
            return
        if self.rate > 0:
            start = max(now, self.busy_until)
            waiting = start - now
            if waiting > self.queue_seconds:
                c["droppedQueue"] += 1
                return
            c["maxQueueMs"] = max(c["maxQueueMs"], waiting * 1000)
            self.busy_until = start + len(packet) * 8 / self.rate
            deliver_at = self.busy_until + self.delay
        else:
            deliver_at = now + self.delay
        self.sequence += 1
        heapq.heappush(self.pending, (deliver_at, self.sequence, packet))

    def deliver_due(self, now):
        while self.pending and self.pending[0][0] <= now:
            packet = heapq.heappop(self.pending)[2]
            try:
                os.write(self.out_fd, packet)
                self.counters["delivered"] += 1
                self.counters["deliveredBytes"] += len(packet)
            except OSError:
                self.counters["droppedWrite"] += 1

    def next_due(self):
        return self.pending[0][0] if self.pending else None

    def stats(self, now):
        # waitMs: how long a packet arriving now would wait in the bottleneck's queue.
        wait_ms = max(0.0, self.busy_until - now) * 1000
        return dict(self.counters, queued=len(self.pending), waitMs=wait_ms)


def check_settings(settings, where="settings"):
    if not isinstance(settings, dict):
        raise ValueError(f"{where} must be an object")
    for key, value in settings.items():
        if key in ("aToB", "bToA") and where == "set":
            check_settings(value, key)
            continue
        if key not in SETTING_KEYS:
            raise ValueError(f"unknown setting {key!r} in {where} (known: {', '.join(SETTING_KEYS)})")
        if key == "blackhole":
            if not isinstance(value, bool):
                raise ValueError("blackhole must be true or false")
        elif not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{key} must be a number >= 0")
        elif key == "loss" and value > 1:
            raise ValueError("loss is a probability, between 0 and 1")


def reply(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main():
    if len(sys.argv) != 4:
        sys.stderr.write("usage: wan-emulator.py TUN_A TUN_B SETTINGS_JSON\n")
        return 2
    settings = json.loads(sys.argv[3])
    # "seed" (start only) makes the random losses repeatable.
    seed = settings.pop("seed", None) if isinstance(settings, dict) else None
    check_settings(settings)
    rng = random.Random(seed)
    fd_a = open_tun(sys.argv[1])
    fd_b = open_tun(sys.argv[2])
    a_to_b = Direction("aToB", fd_b, rng)
    b_to_a = Direction("bToA", fd_a, rng)
    for direction in (a_to_b, b_to_a):
        direction.configure(settings)
    sources = {fd_a: a_to_b, fd_b: b_to_a}

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    os.set_blocking(sys.stdin.fileno(), False)
    selector = selectors.DefaultSelector()
    selector.register(fd_a, selectors.EVENT_READ)
    selector.register(fd_b, selectors.EVENT_READ)
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ)
    reply({"ready": True})

    command_buffer = b""
    while not stop:
        now = time.monotonic()
        dues = [d for d in (a_to_b.next_due(), b_to_a.next_due()) if d is not None]
        timeout = max(0.0, min(dues) - now) if dues else None
        for key, _ in selector.select(timeout):
            fd = key.fd
            if fd == sys.stdin.fileno():
                chunk = os.read(fd, 65536)
                if chunk == b"":
                    stop.append(True)
                    break
                command_buffer += chunk
                while b"\n" in command_buffer:
                    line, command_buffer = command_buffer.split(b"\n", 1)
                    if line.strip():
                        handle_command(line, a_to_b, b_to_a)
                continue
            direction = sources[fd]
            arrived = time.monotonic()
            for _ in range(READ_BURST):
                try:
                    packet = os.read(fd, MAX_PACKET)
                except OSError as error:
                    if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                        break
                    raise
                direction.arrive(packet, arrived)
        now = time.monotonic()
        a_to_b.deliver_due(now)
        b_to_a.deliver_due(now)
    return 0


def handle_command(line, a_to_b, b_to_a):
    request_id = None
    try:
        command = json.loads(line)
        request_id = command.get("id")
        if "set" in command:
            changes = command["set"]
            check_settings(changes, "set")
            common = {k: v for k, v in changes.items() if k in SETTING_KEYS}
            for direction in (a_to_b, b_to_a):
                direction.configure(common)
                direction.configure(changes.get(direction.name, {}))
            reply({"id": request_id, "ok": True})
        elif command.get("stats"):
            now = time.monotonic()
            reply({"id": request_id, "ok": True, "aToB": a_to_b.stats(now), "bToA": b_to_a.stats(now)})
        else:
            raise ValueError("unknown command (known: set, stats)")
    except (ValueError, TypeError, AttributeError) as error:
        reply({"id": request_id, "ok": False, "error": str(error)})


if __name__ == "__main__":
    sys.exit(main())
