#!/usr/bin/env python3
"""Turn criterion's estimates (target/criterion) into the ratio table in benches/README.md.

Usage: python3 benches/report.py [bytes_per_key.json] [gungraun-output.txt] [interleaved.json]
"""
import json
import os
import sys
import datetime

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CRIT = os.path.join(ROOT, "target", "criterion")

# (group, ours, peer, kind, goal): kind "time" → ratio ours/peer (lower is better);
# "throughput" → ratio peer/ours (higher is better).
PAIRS = [
    ("gcra_check_allow", "ratebound_pure", "governor", "time", "≤ 1.0"),
    ("gcra_check_allow", "ratebound_atomic", "governor", "time", "≤ 1.0"),
    ("gcra_check_allow", "ratebound_atomic", "atomic_cas", "time", "—"),
    ("gcra_check_deny", "ratebound_pure", "governor", "time", "≤ 1.0"),
    ("gcra_check_deny", "ratebound_atomic", "governor", "time", "≤ 1.0"),
    ("gcra_check_deny", "ratebound_atomic", "atomic_cas", "time", "—"),
    ("contended_2_threads", "ratebound_atomic", "governor", "throughput", "≥ 1.0"),
    ("keyed_1k", "ratebound", "governor", "time", "≤ 1.0"),
    ("keyed_1m", "ratebound", "governor", "time", "≤ 1.0"),
    ("keyed_flood", "ratebound", "governor", "time", "reported"),
    ("keyed_1m_2_threads", "ratebound", "governor", "throughput", "—"),
    ("keyed_flood_2_threads", "ratebound", "governor", "throughput", "—"),
    ("clock_read", "monotonic", "std_instant", "time", "—"),
]
SOLO = [
    ("keyed_flood", "ratebound_active_evict_lru"),
    ("keyed_flood", "ratebound_active_deny_new_keys"),
    ("windows", "sliding_log_64"),
    ("windows", "sliding_counter"),
    ("windows", "gcra_same_rate"),
    ("budget", "reserve_settle"),
    ("backoff", "next_full_jitter"),
    ("clock_read", "system"),
]


def ns(group, fn):
    path = os.path.join(CRIT, group, fn, "new", "estimates.json")
    with open(path) as f:
        e = json.load(f)
    return e["mean"]["point_estimate"], e["mean"]["confidence_interval"]


def fmt(t):
    return f"{t:.1f} ns" if t < 10_000 else f"{t / 1000:.1f} µs"


def main():
    lines = []
    lines.append(f"Measured on this machine ({os.cpu_count()} cores) on {datetime.date.today()}, one `cargo bench -p ratebound-benches` run; means of criterion's samples.\n")
    lines.append("| benchmark | ratebound | peer | peer time | ratio | goal |")
    lines.append("|---|---|---|---|---|---|")
    for group, ours, peer, kind, goal in PAIRS:
        try:
            a, _ = ns(group, ours)
            b, _ = ns(group, peer)
        except FileNotFoundError:
            lines.append(f"| {group} | {ours}: not run | {peer} | | | {goal} |")
            continue
        if kind == "time":
            ratio = f"{a / b:.2f}× the time"
        else:
            ratio = f"{b / a:.2f}× the throughput"
        lines.append(f"| {group} | {ours}: {fmt(a)} | {peer} | {fmt(b)} | {ratio} | {goal} |")
    lines.append("")
    lines.append("| benchmark (no peer) | time per operation |")
    lines.append("|---|---|")
    for group, fn in SOLO:
        try:
            a, _ = ns(group, fn)
            lines.append(f"| {group}/{fn} | {fmt(a)} |")
        except FileNotFoundError:
            lines.append(f"| {group}/{fn} | not run |")
    try:
        bare, _ = ns("http_layer_per_ip", "bare")
        ours, _ = ns("http_layer_per_ip", "ratebound")
        peer, _ = ns("http_layer_per_ip", "tower_governor")
        noop, _ = ns("http_layer_per_ip", "noop_layer")
        lines.append("")
        lines.append(f"Per-IP layer on one axum handler (`--bench http_layer`, in process through `oneshot`, 1,024 clients): "
                     f"handler alone {fmt(bare)}; ratebound's `RateLimitLayer` adds {fmt(ours - bare)}, tower_governor's "
                     f"`GovernorLayer` adds {fmt(peer - bare)}: **{(ours - bare) / (peer - bare):.2f}× tower_governor's added time** (goal ≤ 1.0). "
                     f"A layer that does nothing adds {fmt(noop - bare)} (what axum charges any layer); beyond it, ratebound's "
                     f"limiter takes {fmt(ours - noop)} and tower_governor's {fmt(peer - noop)}.")
        # Each criterion group runs minutes after the last: when the VM's
        # speed moved between them, a layer can measure below one that does
        # nothing, which no layer can be. Say so rather than let it stand.
        if min(ours, peer) < noop:
            paired = len(sys.argv) > 3 and os.path.exists(sys.argv[3])
            lines.append("That is below what a do-nothing layer adds, which no layer can be: the machine's speed moved "
                         "between these groups, so this run's figure is noise"
                         + ("; the paired rounds below time both layers side by side." if paired else "."))
    except FileNotFoundError:
        lines.append("")
        lines.append("Per-IP layer: not run.")
    if len(sys.argv) > 1 and os.path.exists(sys.argv[1]):
        with open(sys.argv[1]) as f:
            m = json.load(f)
        lines.append("")
        lines.append(f"Memory, {m['keys']} `u64` keys: ratebound {m['ratebound_bytes_per_key']} bytes/key with a GCRA state "
                     f"and {m['ratebound_sliding_counter_bytes_per_key']} with a sliding-counter state (bounded by `max_keys`; goal ≤ 32 for GCRA), "
                     f"governor {m['governor_bytes_per_key']} bytes/key (unbounded until `retain_recent`).")
    if len(sys.argv) > 2 and os.path.exists(sys.argv[2]):
        counts = {}
        name = None
        for line in open(sys.argv[2]):
            line = line.strip()
            if line.startswith("instructions::"):
                # `instructions::group::function[ case:(setup)]`
                name = line.split("::")[2].split()[0]
            elif line.startswith("Instructions:") and name:
                counts[name] = int(line.split()[1].split("|")[0])
        if counts:
            lines.append("")
            lines.append("Instruction counts per operation (gungraun/callgrind, 1000 operations each; the same in every run):")
            lines.append("")
            lines.append("| operation | ratebound | governor | ratio |")
            lines.append("|---|---|---|---|")
            for op in ["gcra_allow", "gcra_deny"]:
                a, b = counts.get(op + "_ratebound"), counts.get(op + "_governor")
                if a and b:
                    lines.append(f"| {op} | {a / 1000:.1f} | {b / 1000:.1f} | {a / b:.2f}× |")
            for op in ["sliding_counter_check", "budget_reserve_settle", "backoff_next"]:
                if op in counts:
                    lines.append(f"| {op} | {counts[op] / 1000:.1f} | — | — |")
            fronts = ["per_ip_bare", "per_ip_ratebound", "per_ip_tower_governor", "per_ip_do_nothing"]
            if all(f in counts for f in fronts):
                # 1,024: CLIENTS in benches/instructions.rs
                bare, ours, peer, noop = (counts[f] / 1024 for f in fronts)
                lines.append("")
                lines.append(f"Per-IP layer, instructions a request (1,024 requests, one per client, after a setup that served "
                             f"each client once; within a few instructions of the next run, as each store draws its hash seed): handler alone "
                             f"{bare:.0f}; ratebound's `RateLimitLayer` adds {ours - bare:.0f}, tower_governor's "
                             f"`GovernorLayer` {peer - bare:.0f}: **{(ours - bare) / (peer - bare):.2f}× tower_governor's "
                             f"added instructions**; a layer that does nothing adds {noop - bare:.0f}.")
    if len(sys.argv) > 3 and os.path.exists(sys.argv[3]):
        with open(sys.argv[3]) as f:
            r = json.load(f)
        lines.append("")
        runs = f"; the median of {r['processes']} processes' figures" if r.get("processes", 1) > 1 else ""
        lines.append(f"The same workloads in interleaved rounds (`--bin interleaved`: each round times both libraries back "
                     f"to back; each figure is the best of {r['rounds']} rounds, so a slow minute on the VM cannot fall on one side only{runs}):")
        lines.append("")
        lines.append("| benchmark | ratebound | governor | ratio | goal |")
        lines.append("|---|---|---|---|---|")
        for name, kind, goal in [("keyed_1k", "time", "≤ 1.0"), ("keyed_1m", "time", "≤ 1.0"),
                                 ("contended_2_threads", "throughput", "≥ 1.0")]:
            a, b = r[name]
            ratio = f"{a / b:.2f}× the time" if kind == "time" else f"{b / a:.2f}× the throughput"
            lines.append(f"| {name} | {fmt(a)} | {fmt(b)} | {ratio} | {goal} |")
        if "http_layer_per_ip" in r:
            bare, ours, peer, *noop = r["http_layer_per_ip"]
            # Medians taken apart, maybe from different processes: the goal is
            # judged on the paired row below.
            several = r.get("processes", 1) > 1
            unpaired = " (of unpaired medians: see the paired row)" if several else ""
            lines.append(f"| http_layer_per_ip (added to a {fmt(bare)} handler) | +{fmt(ours - bare)} | +{fmt(peer - bare)} "
                         f"(tower_governor) | {(ours - bare) / (peer - bare):.2f}× the added time{unpaired} | {'—' if several else '≤ 1.0'} |")
            if "http_layer_per_ip_round_ratio" in r:
                median, q1, q3 = r["http_layer_per_ip_round_ratio"]
                lines.append(f"| http_layer_per_ip, each round's own ratio (paired) | — | — "
                             f"| median {median:.2f}× (middle half {q1:.2f}–{q3:.2f}×) of {r['rounds']} rounds | ≤ 1.0 |")
            if "http_layer_per_ip_process_ratios" in r:
                p = r["http_layer_per_ip_process_ratios"]
                mid = r["http_layer_per_ip_process_median"]
                lines.append(f"| http_layer_per_ip, each process's median paired ratio | — | — "
                             f"| median {mid:.2f}× of {len(p)} processes ({', '.join(f'{x:.2f}' for x in p)}) | ≤ 1.0 |")
            if noop:
                floor = noop[0] - bare
                lines.append(f"| http_layer_per_ip beyond a layer that does nothing (+{fmt(floor)}: what axum charges any layer) "
                             f"| +{fmt(ours - noop[0])} | +{fmt(peer - noop[0])} (tower_governor) "
                             f"| {(ours - noop[0]) / (peer - noop[0]):.2f}× the limiter's own time{unpaired} | — |")
    table = "\n".join(lines)
    readme = os.path.join(ROOT, "benches", "README.md")
    text = open(readme).read()
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    head, rest = text.split(start)
    _, tail = rest.split(end)
    open(readme, "w").write(head + start + "\n" + table + "\n" + end + tail)
    print(table)


if __name__ == "__main__":
    main()
