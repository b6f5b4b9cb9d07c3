#!/usr/bin/env python3
"""Built INT8 PyTorch programs side by side: time per image and where it goes (not a test).

    tools/profile_int8_programs.py --program full=OUT1/build/retinanet-pytorch-cpu/model/int8 \\
        --program subnet=OUT2/build/retinanet-pytorch-cpu/model/int8 --image-size 384 [--rounds 5]

Loads each program ``mlperf-bnas build`` wrote (``model.pt2``), compiles it as the benchmark's
backend does (Inductor, freezing; in this main thread), then:

1. times one batch-1 image per program, interleaved over ``--rounds`` rounds (median, ratio
   against the first program);
2. ``torch.profiler``: the slowest convolutions of each program by input/weight shape, with
   their channels per group;
3. ``ONEDNN_VERBOSE``: which oneDNN kernel ran each convolution, and the time spent in each
   kernel; ``ref:any`` is oneDNN's reference kernel (e.g. an INT8 grouped convolution whose
   channels per group are not a multiple of 4 on x86: docs/bootstrapnas.md, "RetinaNet
   sub-network speed").

The input is uint8 NCHW noise of ``--image-size`` (RetinaNet's cache form). On a shared
machine only the figures of one run compare.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import os
import statistics
import sys
import time
from pathlib import Path


def conv_rows(prof, top: int) -> list[tuple[str, float, int]]:
    """(shapes, ms per call, calls) of the slowest oneDNN convolutions, by self time."""
    rows = []
    for e in prof.key_averages(group_by_input_shape=True):
        if "conv" not in e.key or not e.input_shapes or len(e.input_shapes) < 4:
            continue
        x, w = e.input_shapes[0], e.input_shapes[3]
        if len(x) == 4 and len(w) == 4:
            groups = max(1, x[1] // w[1]) if w[1] else 1
            label = f"in {x[1]}x{x[2]}x{x[3]} w {w[0]}x{w[1]}x{w[2]}x{w[3]} groups {groups} ({w[1]}/group)"
            rows.append((label, e.self_cpu_time_total / 1000 / e.count, e.count, e.self_cpu_time_total / 1000))
    rows.sort(key=lambda r: -r[3])
    return [(label, per_call, calls) for label, per_call, calls, _ in rows[:top]]


def kernels(run) -> dict[str, list[float]]:
    """{oneDNN implementation: [calls, ms]} of one call of ``run``, from ONEDNN_VERBOSE (stdout of the C library)."""
    import torch

    read_fd, write_fd = os.pipe()
    saved = os.dup(1)
    sys.stdout.flush()
    os.dup2(write_fd, 1)
    try:
        with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
            run()
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(write_fd)
        os.close(saved)
    text = io.TextIOWrapper(os.fdopen(read_fd, "rb")).read()
    out: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    for line in text.splitlines():
        f = line.split(",")
        if line.startswith("onednn_verbose") and len(f) > 7 and f[3] == "exec" and f[5] == "convolution":
            out[f[6]][0] += 1
            out[f[6]][1] += float(f[-1])
    return dict(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--program", action="append", required=True, metavar="NAME=DIR",
                   help="a built INT8 program folder (holding model.pt2); the first is the reference")
    p.add_argument("--image-size", type=int, required=True, help="the size the programs were built for")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--top", type=int, default=8, help="convolutions listed per program")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args()

    import torch

    from mlperf_bnas.backends.pytorch import PROGRAM_NAME, compile_program, load_program

    torch.set_num_threads(args.threads)
    x = torch.randint(0, 256, (1, 3, args.image_size, args.image_size), dtype=torch.uint8)
    models = {}
    for spec in args.program:
        name, _, folder = spec.partition("=")
        path = Path(folder) / PROGRAM_NAME
        if not name or not path.is_file():
            sys.exit(f"--program {spec}: expected NAME=DIR with DIR/{PROGRAM_NAME} (a `mlperf-bnas build` output)")
        model = compile_program(load_program(path), "inductor")
        started = time.perf_counter()
        with torch.no_grad():
            model(x)
            model(x)
        print(f"{name}: compiled and warmed up in {time.perf_counter() - started:.1f} s", flush=True)
        models[name] = model
    times: dict[str, list[float]] = {n: [] for n in models}
    with torch.no_grad():
        for _ in range(args.rounds):
            for name, model in models.items():
                started = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - started)
    first = next(iter(models))
    median = {n: statistics.median(t) for n, t in times.items()}
    print(f"\n{args.image_size} px, batch 1, {args.threads} threads, median of {args.rounds} interleaved rounds "
          f"(load {os.getloadavg()[0]:.1f}):")
    for name in models:
        print(f"  {name:12s} {median[name]:.4f} s/image  speed vs {first}: {median[first] / median[name]:.2f}x")
    from torch.profiler import ProfilerActivity, profile

    for name, model in models.items():
        with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            model(x)
        print(f"\n{name}: slowest convolutions (torch.profiler, one image)")
        for label, per_call, calls in conv_rows(prof, args.top):
            print(f"  {per_call:9.2f} ms x {calls}  {label}")
        with torch.no_grad(), contextlib.suppress(Exception):
            used = kernels(lambda: model(x))
            print(f"{name}: oneDNN convolution kernels (ONEDNN_VERBOSE, one image; verbose adds overhead): " +
                  ", ".join(f"{impl} {calls} calls {ms:.1f} ms" for impl, (calls, ms) in sorted(used.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
