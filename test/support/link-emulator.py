#!/usr/bin/env python3
"""
A network link in user space between two TUN devices: what one device's side sends comes out
of the other's after a bottleneck (rate, with a drop-tail queue), random loss, and a delay with
jitter, each set per direction while the link runs. test/support/netns.ts moves one device into
a network namespace, so everything that namespace sends or receives crosses this link.

Why not tc netem: kernels built without sch_netem (CONFIG_NET_SCH_NETEM unset, as on some
virtual machines) have no delay or random loss in the kernel; this runs on any kernel with TUN.

Usage: link-emulator.py HOST_DEVICE NAMESPACE_DEVICE
Prints "ready" once both devices exist. Then takes one JSON command per line on stdin and
answers each with one JSON line on stdout:
  {"id": 1, "shape": {"direction": "down", "rateKbit": 300, "lossPercent": 5, "delayMs": 300,
                      "jitterMs": 50, "queueMs": 200}}      -> {"id": 1, "ok": true}
  {"id": 2, "counters": true}                             -> {"id": 2, "counters": {...}}
"down" is what the host sends into the namespace, "up" what the namespace sends out. A shape
replaces that direction's previous one; fields left out are off. Exits when stdin closes (the
test process ended, however), and the devices go with it.
"""
import collections
import fcntl
import json
import os
import random
import select
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
# A queue longer than this is what a real bottleneck's buffer would hold (drop-tail beyond).
DEFAULT_QUEUE_MS = 200


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


class Direction:
    """One direction of the link: bottleneck, loss, delay and jitter, and what it did so far."""

    def __init__(self, out_fd):
        self.out_fd = out_fd
        self.pending = collections.deque()  # (due time, packet), in due order
        self.busy_until = 0.0
        self.last_due = 0.0
        self.counters = {"passed": 0, "lost": 0, "overflowed": 0}
        self.shape({})

    def shape(self, shaping):
        self.rate_bps = float(shaping.get("rateKbit", 0)) * 1000
        self.loss = float(shaping.get("lossPercent", 0)) / 100
        self.delay = float(shaping.get("delayMs", 0)) / 1000
        self.jitter = float(shaping.get("jitterMs", 0)) / 1000
        self.queue = float(shaping.get("queueMs", DEFAULT_QUEUE_MS)) / 1000

    def accept(self, packet, now):
        if self.rate_bps > 0:
            start = max(now, self.busy_until)
            if start - now > self.queue:
                self.counters["overflowed"] += 1
                return
            self.busy_until = start + len(packet) * 8 / self.rate_bps
            leaves = self.busy_until
        else:
            leaves = now
        if self.loss > 0 and random.random() < self.loss:
            self.counters["lost"] += 1
            return
        due = leaves + self.delay + (random.uniform(-self.jitter, self.jitter) if self.jitter > 0 else 0)
        # Jitter varies the delay without reordering, as on one path (netem would reorder).
        due = max(due, self.last_due)
        self.last_due = due
        self.pending.append((due, packet))

    def release(self, now):
        while self.pending and self.pending[0][0] <= now:
            _, packet = self.pending.popleft()
            try:
                os.write(self.out_fd, packet)
                self.counters["passed"] += 1
            except OSError:
                # The device is down or its queue full: the packet is lost, as on a wire.
                self.counters["overflowed"] += 1

    def next_due(self):
        return self.pending[0][0] if self.pending else None


def main():
    host_name, namespace_name = sys.argv[1], sys.argv[2]
    host_fd = open_tun(host_name)
    namespace_fd = open_tun(namespace_name)
    directions = {"down": Direction(namespace_fd), "up": Direction(host_fd)}
    source_of = {host_fd: directions["down"], namespace_fd: directions["up"]}
    stdin_fd = sys.stdin.fileno()
    os.set_blocking(stdin_fd, False)
    command_buffer = b""
    print("ready", flush=True)

    while True:
        now = time.monotonic()
        dues = [d for d in (direction.next_due() for direction in directions.values()) if d is not None]
        timeout = max(0.0, min(dues) - now) if dues else None
        readable, _, _ = select.select([host_fd, namespace_fd, stdin_fd], [], [], timeout)
        now = time.monotonic()
        for fd in readable:
            if fd == stdin_fd:
                chunk = os.read(stdin_fd, 65536)
                if not chunk:
                    return
                command_buffer += chunk
                while b"\n" in command_buffer:
                    line, command_buffer = command_buffer.split(b"\n", 1)
                    if line.strip():
                        answer(json.loads(line), directions)
                continue
            while True:
                try:
                    packet = os.read(fd, 65536)
                except BlockingIOError:
                    break
                source_of[fd].accept(packet, now)
        for direction in directions.values():
            direction.release(now)


def answer(command, directions):
    reply = {"id": command.get("id")}
    if "shape" in command:
        shaping = command["shape"]
        for name in (["down", "up"] if shaping.get("direction") == "both" else [shaping.get("direction")]):
            directions[name].shape(shaping)
        reply["ok"] = True
    elif command.get("counters"):
        reply["counters"] = {name: dict(direction.counters) for name, direction in directions.items()}
    else:
        reply["error"] = "unknown command"
    print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
