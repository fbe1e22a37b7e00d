"""Power cuts on the MicroPython VM while telemetry is being sealed and queued.

A VM process appends sequence-numbered records to the flash queue (FlashQueue +
SeqStore from agent/telemetry, as the sender does) and acknowledges some, printing
each step after it returned; the host SIGKILLs it at a random moment, several times
on the same directory. After every cut the same directory is re-opened (on CPython:
same code) and checked: no record that was reported appended is lost, the records are
intact and in order, and the next boot never hands out a sequence number twice.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

from agent.telemetry.queue import FlashQueue
from agent.telemetry.seqstore import SeqStore
from host_tools import mpvm

REPO = Path(__file__).resolve().parents[2]

VM_WRITER = r"""
import sys, time
from agent.telemetry.queue import FlashQueue
from agent.telemetry.seqstore import SeqStore
d = sys.argv[1]
seq = SeqStore(d, block=16)
q = FlashQueue(d + "/q", capacity=256 * 1024, segment_size=4096, ack_sync_every=4)
print("BOOT", seq.peek(), len(q))
i = 0
while True:
    n = seq.next()
    q.append(n.to_bytes(8, "big") + bytes([n & 0xFF]) * 56)
    print("APPEND", n)
    i += 1
    if i % 3:
        head = q.peek()
        q.ack()
        print("ACK", int.from_bytes(head[:8], "big"))
    time.sleep_ms(1)
"""


def records_in(d: str) -> list[int]:
    q = FlashQueue(d + "/q", capacity=256 * 1024, segment_size=4096, ack_sync_every=4)
    out, c = [], q.cursor()
    while True:
        p, c = q.read(c)
        if p is None:
            return out
        n = int.from_bytes(p[:8], "big")
        assert p[8:] == bytes([n & 0xFF]) * 56, f"record {n} corrupted"
        out.append(n)


def test_power_cuts_lose_nothing_and_never_reuse_a_number(tmp_path):
    d = str(tmp_path / "flash")
    os.mkdir(d)
    script = tmp_path / "writer.py"
    script.write_text(VM_WRITER)
    rnd = random.Random(6)
    handed_out: set[int] = set()
    appended: list[int] = []
    acked: set[int] = set()
    for cut in range(6):
        proc = subprocess.Popen(mpvm.vm_command(script, d), env=mpvm.vm_env([REPO]), cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
                                start_new_session=True)
        # The cut lands a random time after the writer has booted (its BOOT
        # line), not after the process was spawned: a loaded machine may take
        # longer than the whole window just to start the VM. The BOOT line is
        # read byte by byte from the unbuffered pipe, so nothing after it sits
        # in a Python buffer that communicate() would not return.
        first = b""
        while proc.stdout is not None and not first.endswith(b"\n"):
            ch = proc.stdout.read(1)
            if not ch:
                break
            first += ch
        time.sleep(rnd.uniform(0.05, 0.35))
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=10)
        lines = (first + out).decode(errors="replace").splitlines()
        assert lines and lines[0].startswith("BOOT"), out[-2000:]
        boot_seq = int(lines[0].split()[1])
        # Never below anything handed out before (no nonce reuse across boots).
        assert not handed_out or boot_seq > max(handed_out), (boot_seq, max(handed_out))
        this_boot, boot_acks = [], []
        for line in lines[1:]:
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit():
                continue  # the line being printed at the cut
            if parts[0] == "APPEND":
                this_boot.append(int(parts[1]))
            elif parts[0] == "ACK":
                acked.add(int(parts[1]))
                boot_acks.append(int(parts[1]))
        assert this_boot, f"boot {cut} appended nothing"
        assert len(set(this_boot)) == len(this_boot) and not (set(this_boot) & handed_out)
        handed_out.update(this_boot)
        appended.extend(this_boot)

        queued = records_in(d)
        assert queued == sorted(queued) and len(set(queued)) == len(queued)
        # Nothing lost: every appended, never-acknowledged record is still queued.
        # The one exception is an ack the cut interrupted after q.ack() returned
        # but before its "ACK" line was printed: the record after the last
        # printed ack of this boot.
        missing = [n for n in appended if n not in acked and n not in queued]
        in_progress = [n for n in appended if n not in acked and (not boot_acks or n > boot_acks[-1])][:1]
        assert set(missing) <= set(in_progress), f"after cut {cut}: lost {missing[:10]} ({in_progress})"
        acked.update(missing)
        # Only records appended (possibly one whose APPEND line the cut swallowed)
        # or acknowledged-but-not-yet-synced ones may be there.
        extra = [n for n in queued if n not in handed_out]
        assert len(extra) <= 1 and all(n > max(appended) for n in extra), extra
        handed_out.update(extra)
        appended.extend(extra)
        redelivered = [n for n in queued if n in acked]
        assert len(redelivered) <= 4  # ack_sync_every - 1 (+1 for the ack in progress)
    # The next boot on CPython continues above everything.
    assert SeqStore(d, block=16).next() > max(handed_out)
