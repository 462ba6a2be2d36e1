#!/usr/bin/env python3
"""How much ``--watch`` slows training (issue 34's target: within 3%).

    python3 bench/watch_speed.py --data-dir DATA --dataset emnist-bymerge-resplit
    python3 bench/watch_speed.py --data-dir DATA --dataset emnist-bymerge-resplit --rounds 2 --limit 25600  # quick

Trains the same short run (original recipe, ``--limit`` images, ``--epochs`` epochs, batch 128) over
and over in this process, alternately plain and watched, after one untimed warm-up run (Numba's
compilation). Watched is what ``train.py --watch`` does (``tinynet.cli.train.start_watching``: the
recorder, with its default step-record and snapshot intervals, and the page's server in a
background thread) plus a client polling the API every 2 s as the open page does (``/api/runs``,
the run's new step records, its snapshot). Each round runs both, in alternating order (ABBA), so a
machine whose load drifts hurts both alike.

Reported per run: training images/s (the epochs' images over their seconds, as ``metrics.jsonl``
counts them: the training loop with its callbacks, not the evaluations) and, for watched runs, the
recorder's own time as a share of the training time: between steps (``status.json``'s
``recorder_step_seconds``: what slows the loop) and in all (``recorder_seconds``: also the
snapshots at the start and after each epoch, outside the timed loop, one per epoch); and the
process's CPU time for the whole run (all threads, the server's too; less sensitive to other
processes than wall time). Then the medians, and the medians of the rounds' watched / plain ratios. Exit status 0 when that ratio
is >= 0.97.
"""

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tinynet.cli import train as train_cli  # noqa: E402
from tinynet.training.trainer import train  # noqa: E402


def poll(port, name, stop):
    """Ask the API what the open page asks, every 2 s, until ``stop`` is set."""
    after = None
    while not stop.wait(2.0):
        for path in ("/api/runs", f"/api/runs/{name}/metrics" + (f"?after={after}" if after else ""),
                     f"/api/runs/{name}/snapshot"):
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                connection.request("GET", path)
                body = connection.getresponse().read()
                connection.close()
            except OSError:
                continue
            if "/metrics" in path:
                steps = json.loads(body).get("step_records") or []
                after = steps[-1]["step"] if steps else after


def one_run(argv, run_dir, watched):
    args = train_cli.build_parser().parse_args(argv + (["--watch", "--watch-port", "0"] if watched else []))
    config = train_cli.config_from_args(args)
    callbacks, server, stop = [], None, threading.Event()
    if watched:
        callbacks, server = train_cli.start_watching(args, run_dir)
        poller = threading.Thread(target=poll, args=(server.server_address[1], run_dir.name, stop), daemon=True)
        poller.start()
    cpu = time.process_time()
    try:
        summary = train(config, run_dir, download=False, progress=False, log=lambda *a: None, callbacks=callbacks)
        cpu = time.process_time() - cpu
    finally:
        stop.set()
        if server is not None:
            server.shutdown()
            server.server_close()
    assert summary["status"] == "finished"
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    seconds = sum(r["seconds"] for r in history)
    images = sum(r["images_per_second"] * r["seconds"] for r in history)
    share = None
    if watched:
        status = json.loads((run_dir / "status.json").read_text())
        share = (status["recorder_step_seconds"] / seconds, status["recorder_seconds"] / seconds)
    return images / seconds, share, cpu


def main(argv=None):
    p = argparse.ArgumentParser(prog="bench/watch_speed.py", formatter_class=argparse.RawDescriptionHelpFormatter,
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default="data", help="folder of the IDX files (default: %(default)s)")
    p.add_argument("--dataset", default="emnist-balanced", help="dataset name (default: %(default)s)")
    p.add_argument("--limit", type=int, default=102400, help="training images per epoch (default: 102400, 800 steps)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per run (default: 2)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of one plain and one watched run (default: 3)")
    p.add_argument("--threads", type=int, default=None, help="training threads (default: all cores)")
    args = p.parse_args(argv)
    base = ["--data-dir", args.data_dir, "--dataset", args.dataset, "--no-download", "--limit", str(args.limit),
            "--epochs", str(args.epochs), "--val-fraction", "0.02", "--no-progress"]
    if args.threads:
        base += ["--threads", str(args.threads)]
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} cores; "
          f"train.py {' '.join(base)} [--watch]")
    results = {False: [], True: []}
    ratios, cpu_ratios = [], []
    with tempfile.TemporaryDirectory(prefix="tinynet-watch-speed-") as tmp:
        one_run(base, Path(tmp) / "warm-up", False)
        for r in range(args.rounds):
            order = (False, True) if r % 2 == 0 else (True, False)
            got = {}
            for watched in order:
                started = time.perf_counter()
                got[watched] = one_run(base, Path(tmp) / f"r{r}-{'watch' if watched else 'plain'}", watched)
                results[watched].append(got[watched])
                share = got[watched][1]
                print(f"round {r + 1} {'watched' if watched else 'plain  '}: {got[watched][0]:7.0f} images/s, "
                      f"CPU {got[watched][2]:.1f} s"
                      + (f", recorder {share[0]:.2%} of the training time between steps, {share[1]:.2%} "
                         f"with its snapshots at the start and after the epochs" if watched else "")
                      + f"  ({time.perf_counter() - started:.0f} s)", flush=True)
            ratios.append(got[True][0] / got[False][0])
            cpu_ratios.append(got[True][2] / got[False][2])
    plain = statistics.median(s for s, _, _ in results[False])
    watched = statistics.median(s for s, _, _ in results[True])
    share = statistics.median(x[0] for _, x, _ in results[True])
    total = statistics.median(x[1] for _, x, _ in results[True])
    cpu_ratio = statistics.median(cpu_ratios)
    ratio = statistics.median(ratios)
    print(f"median: plain {plain:.0f} images/s, watched {watched:.0f} images/s; median ratio of the rounds "
          f"{ratio:.3f} ({(1 - ratio):+.1%} slower); the recorder's own time {share:.2%} of training between steps, {total:.2%} "
          f"with the snapshots at the start and after the epochs; CPU time of the whole run (all threads, "
          f"evaluations included) watched / plain: median of the rounds {cpu_ratio:.3f}; load average "
          f"now {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if ratio >= 0.97 else 1


if __name__ == "__main__":
    raise SystemExit(main())
