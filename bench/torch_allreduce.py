#!/usr/bin/env python3
"""Gloo baseline for allreduce_busbw_w<N>_<size> (bench/allreduce.go):
torch.distributed.all_reduce (SUM) of one float32 tensor over N processes
with the gloo backend, init tcp://127.0.0.1:PORT.

    python3 bench/torch_allreduce.py --world 2 --port 29500 \
        --plan 1048576:5:25,26214400:2:9

--plan lists BYTES:WARMUP:ITERS per buffer size. Each iteration is a barrier,
then the all-reduce timed on rank 0 (as the Go side does). Rank 0 prints one
line per size, with its CPU time (user + system) and context switches in the
median iteration:

    RESULT {"bytes": B, "median_s": S, "min_s": S, "iters": K, "cpu_s": C, "ctx_switches": W}
"""

import argparse
import json
import resource
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def cpu_seconds():
    """This process's CPU time so far (user + system, all threads)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def context_switches():
    """This process's context switches so far (voluntary and not)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_nvcsw + ru.ru_nivcsw


def rank_main(rank, world, port, plan):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        for nbytes, warmup, iters in plan:
            t = torch.empty(nbytes // 4, dtype=torch.float32)
            times, cpus, switches = [], [], []
            for it in range(warmup + iters):
                t.fill_(1e-3)
                dist.barrier()
                t0, c0, w0 = time.perf_counter(), cpu_seconds(), context_switches()
                dist.all_reduce(t, op=dist.ReduceOp.SUM)
                if it >= warmup:
                    times.append(time.perf_counter() - t0)
                    cpus.append(cpu_seconds() - c0)
                    switches.append(context_switches() - w0)
            if rank == 0:
                print("RESULT " + json.dumps({"bytes": nbytes, "median_s": statistics.median(times),
                                              "min_s": min(times), "iters": len(times),
                                              "cpu_s": statistics.median(cpus),
                                              "ctx_switches": statistics.median(switches)}), flush=True)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", type=int, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--plan", required=True)
    args = ap.parse_args()
    plan = [tuple(int(x) for x in p.split(":")) for p in args.plan.split(",")]
    mp.spawn(rank_main, args=(args.world, args.port, plan), nprocs=args.world, join=True)


if __name__ == "__main__":
    main()
