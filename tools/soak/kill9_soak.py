#!/usr/bin/env python3
"""kill -9 soak: an acks=all idempotent producer against a broker killed at random moments.

Starts the release `sluice` binary on free ports in a scratch directory, creates a topic and
runs one idempotent producer (acks=all, enable.idempotence=true, short request timeouts,
retries that outlive every restart) at a fixed rate. Each cycle lets it run for a seeded
random time, kills the broker with SIGKILL, restarts it on the same data directory (the same
producer keeps retrying into it), and reads every partition back from offset 0 to its high
watermark, checking the log against the delivery reports:

  - every acknowledged record is in the log at the offset it was acknowledged at (else: lost),
  - no record is in the log twice, acknowledged or not (else: duplicated; with idempotence a
    retry of a batch that reached the log must be answered with its original offsets),
  - offsets are contiguous from 0 and every record is one the producer wrote,
  - the producer raised no fatal error (e.g. OUT_OF_ORDER_SEQUENCE_NUMBER).

After the last cycle producing stops, every record must be delivered, and the log must hold
every record produced exactly once. One summary line is printed per cycle and a final one;
the exit status is 0 only if nothing was lost, duplicated or refused.

Needs python3 and confluent-kafka (`pip install confluent-kafka`). See tools/soak/README.md.
"""

import argparse
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

try:
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError:  # pragma: no cover - the message is the point
    sys.exit("kill9_soak.py needs confluent-kafka: pip install confluent-kafka")

REPO = Path(__file__).resolve().parents[2]
TOPIC = "soak"
# librdkafka's own log lines (disconnects at every kill) would drown the summary lines.
QUIET = logging.getLogger("kill9_soak.librdkafka")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
CLIENT_TIMEOUT_S = 30.0
# Colour codes the broker's log formatter may put around the level.
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Offsets below the last check's high watermark that an incremental check reads again.
RECHECK_OVERLAP = 2000
# How long the producer gets to deliver everything after the last cycle.
FINAL_FLUSH_S = 120.0


def default_binary():
    target = os.environ.get("CARGO_TARGET_DIR")
    base = Path(target) if target else REPO / "target"
    return str(base / "release" / "sluice")


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="kill -9 the broker N times under acks=all idempotent load and check "
        "that no acknowledged record is lost and no record is duplicated."
    )
    p.add_argument("--cycles", type=int, default=10, help="kill -9 + restart cycles (default 10)")
    p.add_argument("--seed", type=int, default=1, help="seed of the kill schedule (default 1)")
    p.add_argument("--binary", default=default_binary(),
                   help="sluice binary (default $CARGO_TARGET_DIR or target/ + release/sluice)")
    p.add_argument("--partitions", type=int, default=3, help="partitions of the topic (default 3)")
    p.add_argument("--rate", type=float, default=2000.0,
                   help="records produced per second (default 2000)")
    p.add_argument("--min-run", type=float, default=0.5,
                   help="shortest time the producer runs before a kill, seconds (default 0.5)")
    p.add_argument("--max-run", type=float, default=3.0,
                   help="longest time the producer runs before a kill, seconds (default 3.0)")
    p.add_argument("--max-down", type=float, default=0.5,
                   help="longest time the broker stays down after a kill, seconds (default 0.5)")
    p.add_argument("--request-timeout-ms", type=int, default=400,
                   help="producer request.timeout.ms (default 400)")
    p.add_argument("--full-check-every", type=int, default=10, metavar="K",
                   help="re-read the whole log every K cycles and after the last one; the "
                   "cycles between read what is new since the last check plus an overlap "
                   "(default 10)")
    p.add_argument("--cores", default="1", help="broker --cores (default 1)")
    p.add_argument("--taskset", metavar="CPUS",
                   help="run the broker under `taskset -c CPUS` (e.g. 1)")
    p.add_argument("--work-dir", help="scratch directory (default: a new temporary directory)")
    p.add_argument("--keep", action="store_true",
                   help="keep the scratch directory (it is always kept after a failure)")
    p.add_argument("--broker-arg", action="append", default=[],
                   help="extra `sluice start` argument (repeatable)")
    a = p.parse_args(argv)
    if (a.cycles < 1 or a.partitions < 1 or a.rate <= 0 or a.min_run <= 0
            or a.max_run < a.min_run or a.full_check_every < 1):
        p.error("need --cycles >= 1, --partitions >= 1, --rate > 0, 0 < --min-run <= --max-run, "
                "--full-check-every >= 1")
    return a


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Broker:
    """One sluice process at a time on a fixed data dir and ports."""

    def __init__(self, args, root):
        self.args = args
        self.root = root
        self.data_dir = root / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.kafka_port, self.admin_port = free_ports(2)
        self.proc = None
        self.starts = 0
        self.log_path = None

    def command(self):
        cmd = []
        if self.args.taskset:
            cmd += ["taskset", "-c", self.args.taskset]
        cmd += [
            self.args.binary, "start",
            "--data-dir", str(self.data_dir),
            "--kafka-addr", f"127.0.0.1:{self.kafka_port}",
            "--admin-addr", f"127.0.0.1:{self.admin_port}",
            "--cores", self.args.cores,
        ]
        return cmd + self.args.broker_arg

    def start(self):
        assert self.proc is None
        self.starts += 1
        self.log_path = self.root / f"broker-{self.starts}.log"
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not accepts(self.kafka_port):
            if self.proc.poll() is not None:
                raise SystemExit(f"broker exited during start-up ({self.proc.returncode}); "
                                 f"log {self.log_path}:\n{tail(self.log_path)}")
            if time.monotonic() > deadline:
                self.kill9()
                raise SystemExit(f"broker did not accept TCP within {START_TIMEOUT_S}s; "
                                 f"log {self.log_path}:\n{tail(self.log_path)}")
            time.sleep(0.05)

    def kill9(self):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None
        # The kernel tears a dead process's io_uring and listener down asynchronously.
        deadline = time.monotonic() + 10
        while accepts(self.kafka_port) and time.monotonic() < deadline:
            time.sleep(0.02)

    def terminate(self):
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill9()
            return "timeout"
        finally:
            self.proc = None

    def bad_log_lines(self):
        """ERROR and panic lines of every broker log so far."""
        bad = []
        for i in range(1, self.starts + 1):
            path = self.root / f"broker-{i}.log"
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            for line in ANSI.sub("", text).splitlines():
                if " ERROR " in line or "panicked" in line:
                    bad.append(f"{path.name}: {line}")
        return bad


def tail(path, n=4000):
    try:
        return Path(path).read_text(errors="replace")[-n:]
    except OSError as e:
        return f"<cannot read {path}: {e}>"


class Load:
    """The idempotent producer, its delivery reports and a thread producing at a rate."""

    def __init__(self, bootstrap, args):
        self.args = args
        self.lock = threading.Lock()
        self.acked = []  # (partition, offset, seq), appended by delivery reports
        self.failed = []  # (seq, error) of records the producer gave up on
        self.fatal = []  # fatal client errors
        self.next_seq = 0
        self.stop = threading.Event()
        self.producer = Producer({
            "bootstrap.servers": bootstrap,
            "broker.address.family": "v4",
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 2,
            "request.timeout.ms": args.request_timeout_ms,
            # Outlives every restart: an unacknowledged record is retried, never dropped.
            "message.timeout.ms": 600000,
            "retry.backoff.ms": 20,
            "retry.backoff.max.ms": 200,
            "reconnect.backoff.ms": 20,
            "reconnect.backoff.max.ms": 200,
            "socket.timeout.ms": 5000,
            "error_cb": self.on_error,
            "logger": QUIET,
        })
        self.thread = threading.Thread(target=self.run, daemon=True)

    def on_error(self, err):
        if err.fatal():
            with self.lock:
                self.fatal.append(str(err))

    def on_delivery(self, err, msg):
        seq = int(msg.value())
        with self.lock:
            if err is None:
                self.acked.append((msg.partition(), msg.offset(), seq))
            else:
                self.failed.append((seq, str(err)))

    def run(self):
        interval = 1.0 / self.args.rate
        parts = self.args.partitions
        next_at = time.monotonic()
        while not self.stop.is_set():
            seq = self.next_seq
            value = str(seq).encode()
            while True:
                try:
                    self.producer.produce(TOPIC, value=value, key=value, partition=seq % parts,
                                          on_delivery=self.on_delivery)
                    break
                except BufferError:
                    self.producer.poll(0.05)
                    if self.stop.is_set():
                        return
            self.next_seq = seq + 1
            self.producer.poll(0)
            next_at += interval
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            elif pause < -1.0:
                next_at = time.monotonic()  # fell behind (broker down): do not burst

    def take_acked(self):
        with self.lock:
            out, self.acked = self.acked, []
        return out

    def finish(self):
        self.stop.set()
        self.thread.join()
        left = self.producer.flush(FINAL_FLUSH_S)
        return left


def read_log(bootstrap, partitions, starts):
    """Every record of every partition from `starts[partition]` to the high watermark.

    Returns (at, highs, problems): at[(partition, offset)] = seq, highs[partition] = high
    watermark; problems lists offsets that are not contiguous and records the producer did
    not write."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "broker.address.family": "v4",
        "group.id": "kill9-soak-verify",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        "auto.offset.reset": "error",
        "logger": QUIET,
    })
    at = {}
    problems = []
    highs = {}
    try:
        for part in range(partitions):
            lo, hi = c.get_watermark_offsets(TopicPartition(TOPIC, part), timeout=CLIENT_TIMEOUT_S)
            highs[part] = hi
            if lo != 0:
                problems.append(f"partition {part}: log start is {lo}, not 0")
            start = min(starts[part], hi)
            if hi <= start:
                continue
            c.assign([TopicPartition(TOPIC, part, start)])
            expected = start
            deadline = time.monotonic() + 120
            while expected < hi:
                if time.monotonic() > deadline:
                    problems.append(f"partition {part}: read stopped at {expected} of {hi}")
                    break
                for m in c.consume(num_messages=10000, timeout=1.0):
                    if m.error():
                        problems.append(f"partition {part}: consumer error {m.error()}")
                        expected = hi
                        break
                    off = m.offset()
                    if off >= hi:
                        continue
                    if off != expected:
                        problems.append(f"partition {part}: offset {off} read where {expected} was expected")
                    expected = off + 1
                    try:
                        seq = int(m.value())
                    except (TypeError, ValueError):
                        problems.append(f"partition {part} offset {off}: not a record we wrote: {m.value()!r}")
                        continue
                    if m.key() != m.value():
                        problems.append(f"partition {part} offset {off}: key and value differ")
                    at[(part, off)] = seq
            c.unassign()
    finally:
        c.close()
    return at, highs, problems


def check(at, acked_at, acked_unplaced, produced=None):
    """(lost, duplicated, missing, details) of the log `at` against acknowledgements:
    `acked_at` ({(partition, offset): seq}) must be exactly there, `acked_unplaced`
    ({seq: partition}, acknowledged without an offset) somewhere in their partition; with
    `produced`, every seq below it must be in the log."""
    places = {}
    for key, seq in at.items():
        places.setdefault(seq, []).append(key)
    lost = [(k, s) for k, s in acked_at.items() if at.get(k) != s]
    lost += [((p, None), s) for s, p in acked_unplaced.items()
             if not any(part == p for part, _ in places.get(s, []))]
    dups = {s: p for s, p in places.items() if len(p) > 1}
    details = []
    if lost:
        details.append(f"lost (partition, offset) -> seq, e.g. {sorted(lost, key=str)[:10]}")
    if dups:
        details.append(f"duplicated seq -> [(partition, offset)], e.g. {sorted(dups.items())[:10]}")
    missing = 0
    if produced is not None:
        missing_seqs = [s for s in range(produced) if s not in places]
        missing = len(missing_seqs)
        if missing_seqs:
            details.append(f"{missing} produced records never reached the log, e.g. {missing_seqs[:10]}")
    return len(lost), len(dups), missing, details


def main(argv):
    args = parse_args(argv)
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"{args.binary} is not an executable (build it: cargo build --release, or pass --binary)")
    rng = random.Random(args.seed)
    root = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="sluice-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    broker = Broker(args, root)
    print(f"kill9 soak: {args.cycles} cycles, seed {args.seed}, {args.partitions} partitions, "
          f"{args.rate:g} records/s, broker {args.binary} ({' '.join(broker.command())}), "
          f"scratch {root}", flush=True)
    try:
        return run_soak(args, rng, root, broker)
    except BaseException:
        # Never leave a broker behind (an unexpected error, ^C).
        broker.kill9()
        print(f"scratch directory kept: {root}", flush=True)
        raise


def run_soak(args, rng, root, broker):
    broker.start()
    bootstrap = f"127.0.0.1:{broker.kafka_port}"
    admin = AdminClient({"bootstrap.servers": bootstrap, "broker.address.family": "v4",
                         "logger": QUIET})
    for fut in admin.create_topics([NewTopic(TOPIC, args.partitions, 1)]).values():
        fut.result(timeout=CLIENT_TIMEOUT_S)

    load = Load(bootstrap, args)
    load.thread.start()
    acked_at = {}
    # librdkafka acknowledges a batch whose request failed with an unknown outcome (a
    # timeout, a dropped connection) when a later batch of the partition succeeds: those
    # delivery reports carry no offset, so their records are looked up by value.
    acked_unplaced = {}
    twice_acked = []
    failures = []
    # What the log held at the last check, and each partition's high watermark then.
    log = {}
    verified_end = {part: 0 for part in range(args.partitions)}

    def read_and_compare(full):
        """Reads the log (all of it, or what is new since the last check plus an overlap)
        into `log`; returns the problems found, including committed records that changed."""
        nonlocal log
        starts = {part: 0 if full else max(0, end - RECHECK_OVERLAP)
                  for part, end in verified_end.items()}
        fresh, highs, problems = read_log(bootstrap, args.partitions, starts)
        for part, end in verified_end.items():
            if highs.get(part, 0) < end:
                problems.append(f"partition {part}: high watermark went back from {end} to "
                                f"{highs.get(part)}: committed records are gone")
        changed = [(k, log[k], seq) for k, seq in fresh.items() if k in log and log[k] != seq]
        if changed:
            problems.append(f"{len(changed)} committed offsets hold another record now, "
                            f"e.g. ((partition, offset), before, now) {changed[:10]}")
        if full:
            gone = [k for k in log if k not in fresh]
            if gone:
                problems.append(f"{len(gone)} committed records are gone, e.g. {sorted(gone)[:10]}")
            log = fresh
        else:
            log.update(fresh)
        verified_end.update(highs)
        return problems
    started = time.monotonic()

    def add_acked():
        for part, off, seq in load.take_acked():
            if off is None or off < 0:
                acked_unplaced[seq] = part
                continue
            prev = acked_at.setdefault((part, off), seq)
            if prev != seq:
                twice_acked.append((part, off, prev, seq))

    for cycle in range(1, args.cycles + 1):
        run = rng.uniform(args.min_run, args.max_run)
        down = rng.uniform(0, args.max_down)
        time.sleep(run)
        broker.kill9()
        time.sleep(down)
        t0 = time.monotonic()
        broker.start()
        restart_s = time.monotonic() - t0
        add_acked()
        full = cycle % args.full_check_every == 0 or cycle == args.cycles
        problems = read_and_compare(full)
        at = log
        lost, dups, _, details = check(at, acked_at, acked_unplaced)
        with load.lock:
            fatal = list(load.fatal)
            failed = len(load.failed)
        print(f"cycle {cycle}/{args.cycles}: ran {run:.2f}s, down {down:.2f}s, restart {restart_s:.2f}s; "
              f"produced {load.next_seq}, acknowledged {len(acked_at) + len(acked_unplaced)} "
              f"({len(acked_unplaced)} without offset), log {len(at)} records; "
              f"lost {lost}, duplicated {dups}, failed {failed}, fatal {len(fatal)}"
              f"{' (whole log re-read)' if full else ''}", flush=True)
        problems += details
        if twice_acked:
            problems.append(f"offsets acknowledged for two records: {twice_acked[:10]}")
        if fatal:
            problems.append(f"fatal producer errors: {fatal}")
        if failed:
            problems.append(f"records the producer gave up on: {load.failed[:10]}")
        if problems:
            failures = [f"cycle {cycle}: {p}" for p in problems]
            break

    left = None
    if not failures:
        left = load.finish()
        add_acked()
        problems = read_and_compare(True)
        at = log
        produced = load.next_seq
        lost, dups, missing, details = check(at, acked_at, acked_unplaced, produced)
        problems += details
        if left:
            problems.append(f"{left} records still undelivered after {FINAL_FLUSH_S}s")
        if load.failed:
            problems.append(f"{len(load.failed)} records the producer gave up on, e.g. {load.failed[:10]}")
        if load.fatal:
            problems.append(f"fatal producer errors: {load.fatal}")
        acked = len(acked_at) + len(acked_unplaced)
        if acked != produced or len(at) != produced:
            problems.append(f"{produced} produced, {acked} acknowledged, {len(at)} in the log")
        failures = [f"final: {p}" for p in problems]
    else:
        load.stop.set()
        lost = dups = None

    status = broker.terminate()
    if status not in (0, None):
        failures.append(f"broker exit status after SIGTERM: {status}")
    bad = broker.bad_log_lines()
    if bad:
        failures.append(f"{len(bad)} ERROR/panic lines in the broker logs, e.g.\n  " + "\n  ".join(bad[:10]))

    elapsed = time.monotonic() - started
    if failures:
        print("FAILED:\n" + "\n".join(failures), flush=True)
        print(f"scratch directory kept: {root}", flush=True)
        return 1
    print(f"kill9 soak passed: {args.cycles} cycles, seed {args.seed}, "
          f"{len(acked_at) + len(acked_unplaced)} acknowledged records (every record produced; "
          f"{len(acked_unplaced)} acknowledged without offset), lost 0, duplicated 0, "
          f"in {elapsed:.0f}s", flush=True)
    if not args.keep and not args.work_dir:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
