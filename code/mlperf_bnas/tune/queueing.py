"""Analytic Server capacity of a backend with deterministic service time (M/D/c).

LoadGen's Server scenario issues single-sample queries with Poisson arrivals
(exponential gaps). A backend that serves every query in exactly ``D`` seconds
on ``c`` parallel workers, first come first served, is an M/D/c queue.

With deterministic service, departures happen in arrival order, so query ``n``
starts when query ``n - c`` finishes: ``W_n = max(0, W_{n-c} + D - (A_n - A_{n-c}))``.
That is Lindley's recursion of a single-server queue whose inter-arrival time
is Erlang(c, lambda) (the sum of ``c`` exponential gaps): the classical
reduction of M/D/c to E_c/D/1 (Crommelin, 1932). Its stationary waiting time is
the fixed point of Lindley's integral equation, solved here numerically on a
grid; no simulation is involved. A query's latency is ``W + D``.
"""

from __future__ import annotations

import math

import numpy as np


def _erlang_sf(t: np.ndarray, shape: int, rate: float) -> np.ndarray:
    """P(T > t) for T ~ Erlang(shape, rate): exp(-rate t) * sum_{k<shape} (rate t)^k / k!."""
    x = rate * np.clip(t, 0.0, None)
    term = np.ones_like(x)
    total = np.ones_like(x)
    for k in range(1, shape):
        term = term * x / k
        total = total + term
    return np.exp(-x) * total


def waiting_time_tail(arrival_rate: float, service_s: float, workers: int, threshold_s: float,
                      grid_points_per_service: int = 50, tol: float = 1e-10,
                      max_iterations: int = 200_000) -> float:
    """P(W > threshold_s) in the stationary M/D/c queue (FCFS), W the wait before service."""
    if arrival_rate <= 0:
        return 0.0
    rho = arrival_rate * service_s / workers
    if rho >= 1:
        return 1.0
    if threshold_s < 0:
        return 1.0
    h = service_s / grid_points_per_service
    # Increment X = D - T with T ~ Erlang(workers, arrival_rate), as a pmf on the grid
    # (cell k holds P(X in ((k-1/2)h, (k+1/2)h])). T beyond its 1e-13 quantile is dropped.
    t_max = (workers + 12 * math.sqrt(workers) + 30) / arrival_rate   # P(T > t_max) < 1e-13
    k_low = math.floor((service_s - t_max) / h) - 1
    k_high = grid_points_per_service
    ks = np.arange(k_low, k_high + 1)
    # X <= x  <=>  T >= D - x
    cdf_upper = _erlang_sf(service_s - (ks + 0.5) * h, workers, arrival_rate)
    cdf_lower = _erlang_sf(service_s - (ks - 0.5) * h, workers, arrival_rate)
    pmf_x = np.clip(cdf_upper - cdf_lower, 0.0, None)
    pmf_x /= pmf_x.sum()
    # The waiting-time grid must hold the tail well past the threshold.
    mean_wait_bound = service_s * rho / (2 * (1 - rho)) + service_s
    size = int(max(threshold_s, 40 * mean_wait_bound) / h) + 2 * len(ks)
    nfft = 1 << (size + len(ks)).bit_length()
    fx = np.fft.rfft(pmf_x, nfft)
    w = np.zeros(size)
    w[0] = 1.0
    for _ in range(max_iterations):
        conv = np.fft.irfft(np.fft.rfft(w, nfft) * fx, nfft)[: size + len(ks) - 1]
        # conv[j] is the mass at wait (j + k_low) * h; negative waits are 0 (Lindley's max).
        zero_at = -k_low
        new = np.zeros(size)
        new[0] = conv[: zero_at + 1].sum()
        tail = conv[zero_at + 1: zero_at + size]
        new[1: 1 + len(tail)] = tail
        new[-1] += conv[zero_at + size:].sum()
        new = np.clip(new, 0.0, None)
        new /= new.sum()
        delta = np.abs(np.cumsum(new) - np.cumsum(w)).max()
        w = new
        if delta < tol:
            break
    index = int(math.floor(threshold_s / h + 1e-9))
    return float(w[index + 1:].sum())


def latency_percentile_met(arrival_rate: float, service_s: float, workers: int, bound_s: float,
                           percentile: float = 0.99, grid_points_per_service: int = 50) -> bool:
    return waiting_time_tail(arrival_rate, service_s, workers, bound_s - service_s,
                             grid_points_per_service=grid_points_per_service) <= 1.0 - percentile


def max_server_qps(service_s: float, workers: int, bound_s: float, percentile: float = 0.99,
                   rel_tol: float = 2e-3, max_utilisation: float = 1.0, grid_points_per_service: int = 50) -> float:
    """Highest Poisson arrival rate whose ``percentile`` latency stays within ``bound_s``.

    ``max_utilisation`` < 1 caps the answer at that fraction of the capacity ``workers /
    service_s``: near utilisation 1 the fixed point takes many iterations (minutes when the
    bound is dozens of service times), and a caller that only needs a safe rate (the
    sizing of smoke runs) has no use for the last few percent. A coarser grid is faster too.
    """
    if bound_s < service_s:
        return 0.0
    lo, hi = 0.0, max_utilisation * workers / service_s
    if max_utilisation < 1.0 and latency_percentile_met(hi, service_s, workers, bound_s, percentile,
                                                        grid_points_per_service):
        return hi
    while hi - lo > rel_tol * hi:
        mid = (lo + hi) / 2
        if latency_percentile_met(mid, service_s, workers, bound_s, percentile, grid_points_per_service):
            lo = mid
        else:
            hi = mid
    return lo


def md1_waiting_cdf(arrival_rate: float, service_s: float, t: float) -> float:
    """Exact P(W <= t) for M/D/1 (Erlang's formula), evaluated in exact rational-ish arithmetic.

    ``P(W <= t) = (1 - rho) * sum_{k=0}^{floor(t/D)} (lam*(k*D - t))^k / k! * exp(-lam*(k*D - t))``.
    The alternating sum loses precision in floating point, so ``decimal`` is used.
    """
    from decimal import Decimal, getcontext

    getcontext().prec = 80
    lam, d, tt = Decimal(repr(arrival_rate)), Decimal(repr(service_s)), Decimal(repr(t))
    rho = lam * d
    total = Decimal(0)
    for k in range(int(math.floor(t / service_s)) + 1):
        x = lam * (k * d - tt)
        total += (x ** k) / Decimal(math.factorial(k)) * (-x).exp()
    return float((1 - rho) * total)


def batching_server_latencies(arrival_rate: float, queries: int, workers: int, max_batch: int,
                              batch_s, seed: int = 0) -> np.ndarray:
    """Latencies (s) of ``queries`` Poisson arrivals through the batching Server SUT's policy.

    A discrete-event simulation (not a closed form: dynamic batching has none that is simple):
    ``workers`` slots; whenever a slot is free and samples wait, the oldest ``min(max_batch,
    waiting)`` leave as one batch that takes ``batch_s(size)`` seconds; no batch waits to
    fill. This is ``loadgen/sut.py``'s ``BatchingServerSUT`` with a backend of known service
    times and no harness cost, so a harness run against the simulated backend can be compared
    with it to see what the harness itself loses.
    """
    import heapq
    from collections import deque

    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / arrival_rate, queries)).tolist()
    latencies: list[float] = []
    waiting: deque[float] = deque()
    busy: list[float] = []
    free = workers
    i, now = 0, 0.0
    inf = float("inf")
    while i < queries or waiting or busy:
        while free and waiting:
            size = min(max_batch, len(waiting))
            end = now + batch_s(size)
            for _ in range(size):
                latencies.append(end - waiting.popleft())
            heapq.heappush(busy, end)
            free -= 1
        next_arrival = arrivals[i] if i < queries else inf
        next_end = busy[0] if busy else inf
        if next_arrival <= next_end:
            now = next_arrival
            waiting.append(next_arrival)
            i += 1
        else:
            now = heapq.heappop(busy)
            free += 1
    return np.asarray(latencies)


def max_batching_server_qps(workers: int, max_batch: int, batch_s, bound_s: float, percentile: float = 0.99,
                            queries: int = 100_000, rel_tol: float = 2e-3, seed: int = 0) -> float:
    """Highest Poisson rate whose simulated ``percentile`` latency (``batching_server_latencies``)
    stays within ``bound_s``: the analytic Server figure of a batching layout. Bisection on the
    rate, the same arrivals' seed at every rate."""
    lo, hi = 0.0, workers * max_batch / batch_s(max_batch)
    while hi - lo > rel_tol * hi:
        mid = (lo + hi) / 2
        lat = batching_server_latencies(mid, queries, workers, max_batch, batch_s, seed)
        if np.quantile(lat, percentile) <= bound_s:
            lo = mid
        else:
            hi = mid
    return lo
