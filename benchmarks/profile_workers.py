"""Where a worker's CPU goes under load: py-spy samples every gunicorn worker during one mix.

Starts a variant of `compare_stock.py` (`service` or `bare`), runs one of its mixes while
`py-spy record --gil` samples each worker (only threads holding the GIL: Python's CPU), then
prints, per request, the GIL time spent in each layer (our middleware, gunicorn, Flask/werkzeug,
MLflow's handlers, SQLAlchemy, ...) and in the heaviest functions, inclusive. Samples are
comparable across variants. Needs root (ptrace) and `pip install py-spy`.

    python benchmarks/profile_workers.py --variant service --mix ui_index [--seconds 15]
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_stock import (
    VARIANTS,
    children_of,
    mixes,
    run_mix,
    running,
    seed,
    wait_first_200,
)

# First match wins, innermost frame first: the layer a sample's own time is charged to.
LAYERS = (
    ("our middleware", re.compile(r"\bmlflow_app/(?!buffered_worker)")),
    ("our worker", re.compile(r"\bmlflow_app/buffered_worker")),
    ("prometheus_client", re.compile(r"\bprometheus_client/")),
    ("sqlite3 / SQLAlchemy", re.compile(r"\bsqlalchemy/|sqlite3")),
    ("MLflow", re.compile(r"\bmlflow/")),
    ("Flask / werkzeug", re.compile(r"\b(flask|werkzeug)/")),
    ("gunicorn", re.compile(r"\bgunicorn/")),
    ("logging", re.compile(r"\blogging/")),
)
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def layer_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        match = FRAME.match(frame)
        path = match["file"] if match else frame
        for name, pattern in LAYERS:
            if pattern.search(path):
                return name
    return "other (stdlib, interpreter)"


RATE = 250  # samples per second


def summarise(raw_files: list[Path], requests: int, top: int, match: str) -> str:
    layers: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for raw in raw_files:
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack:
                continue
            frames = stack.split(";")
            n = int(count)
            total += n
            layers[layer_of(frames)] += n
            for frame in set(frames):
                if re.search(match, frame):
                    inclusive[re.sub(r":\d+\)$", ")", frame)] += n

    def per_request(n: int) -> str:
        return f"{1e6 * n / RATE / max(1, requests):7.1f} us"

    lines = [f"GIL time per request: {per_request(total)}; own time by layer:"]
    lines += [f"  {per_request(n)}  {name}" for name, n in layers.most_common()]
    lines.append(f"inclusive, frames matching {match!r}:")
    lines += [f"  {per_request(n)}  {frame}" for frame, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="service", choices=sorted(VARIANTS))
    parser.add_argument("--mix", default="ui_index")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--match", default=r"\b(mlflow_app|gunicorn|flask)/", help="frames to list, inclusive"
    )
    args = parser.parse_args()
    with running(VARIANTS[args.variant]) as (port, process), tempfile.TemporaryDirectory() as out:
        wait_first_200(port, process)
        time.sleep(2)
        concurrency, one = mixes(port, seed(port))[args.mix]
        workers = children_of(process.pid).get(process.pid, [])
        raws = [Path(out) / f"{pid}.txt" for pid in workers]
        record = ["py-spy", "record", "--gil", "-f", "raw", "-r", str(RATE)]
        record += ["-d", str(args.seconds)]
        samplers = [
            subprocess.Popen(
                [*record, "-o", str(raw), "-p", str(pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for pid, raw in zip(workers, raws, strict=True)
        ]
        time.sleep(1)
        # The load ends before the samplers do, so every request of the mix is sampled.
        result = run_mix(port, concurrency, 1_000_000, one, seconds=args.seconds - 3)
        for sampler in samplers:
            sampler.wait(timeout=args.seconds + 30)
        print(f"{args.variant} {args.mix}: {result['requests']:.0f} requests")
        sampled = [raw for raw in raws if raw.exists()]
        print(summarise(sampled, int(result["requests"]), args.top, args.match))
    return 0


if __name__ == "__main__":
    sys.exit(main())
