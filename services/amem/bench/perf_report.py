"""`make bench`'s reports (amem.bench.perf): the Markdown of a run and the plot of search
latency against tenant size."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def markdown(r: dict[str, Any]) -> str:
    m, e = r["machine"], r["embedding"]
    lines = [
        f"# amem benchmark, {r['date']}",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Python "
        f"{m['python']}, embedding backend {m['embedding_backend']}; took {r['took_s']} s.",
        "",
        "## Embedding service (one text per call)",
        "",
        "Raw in-process `SentenceTransformer.encode` batch throughput (all texts in one call, "
        f"which sorts them by length): **{e['raw']['texts_per_s']} texts/s** "
        f"({e['raw']['texts']} texts, batch {e['raw']['batch_size']}); with the `onnx-int8` "
        f"backend {e['raw_int8']['texts_per_s']} texts/s.",
        "",
        "| clients | texts/s | ratio to raw | p50 ms | p95 ms |",
        "|---:|---:|---:|---:|---:|",
    ]
    raw = r["embedding"]["raw"]["texts_per_s"]
    for row in r["embedding"]["service"]:
        lines.append(
            f"| {row['concurrency']} | {row['per_s']} | {row['per_s'] / raw:.2f} | "
            f"{row['p50_ms']} | {row['p95_ms']} |"
        )
    lines += [
        "",
        "## Write path (`POST /v1/memories`, one note per call)",
        "",
        "| clients | notes/s | ratio to raw embedding | p50 ms | p95 ms | p99 ms |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for label, rows in (
        ("offline evolution running", r["write"]),
        ("no evolution service", r["write_no_evolution"]),
    ):
        for row in rows:
            lines.append(
                f"| {row['concurrency']} ({label}) | {row['per_s']} | {row['per_s'] / raw:.2f} | "
                f"{row['p50_ms']} | {row['p95_ms']} | {row['p99_ms']} |"
            )
    names = ["embedding", "chromadb", "gateway", "evolution", "client"]
    lines += [
        "",
        "CPU per note while writing at C = 16, by process (ms; `client` is the load generator). "
        f"{m['cores']} cores at this CPU per note cap the rate at cores x 1000 / total notes/s:",
        "",
        "| run | " + " | ".join(names) + " | total | cap notes/s |",
        "|---|" + "---:|" * (len(names) + 2),
    ]
    for label, rows in (
        ("offline evolution running", r["write"]),
        ("no evolution service", r["write_no_evolution"]),
    ):
        for row in rows:
            cpu = row.get("cpu_ms_per_note")
            if row["concurrency"] != 16 or not cpu:
                continue
            total = sum(cpu.values())
            cells = " | ".join(str(cpu.get(n, "-")) for n in names)
            cap = m["cores"] * 1000 / total
            lines.append(f"| {label} | {cells} | {total:.1f} | {cap:.0f} |")
    lines += ["", *search_table(r), ""]
    n = r["naive"]
    lines += [
        "## The naive way (A-mem library style: one process, torch, in-process ChromaDB)",
        "",
        f"- write, one note per call: p50 {n['write_c1']['p50_ms']} ms, p95 "
        f"{n['write_c1']['p95_ms']} ms, {n['write_c1']['per_s']} notes/s",
        f"- search at {n['notes']:,} notes: p50 {n['search_c1']['p50_ms']} ms, p95 "
        f"{n['search_c1']['p95_ms']} ms",
        "",
    ]
    return "\n".join(lines)


def search_table(r: dict[str, Any]) -> list[str]:
    """The search path's section of a report: latency by size and mode, memory by size."""
    lines = [
        "## Search path (`POST /v1/memories/search`, k = 10, one tenant)",
        "",
        "| notes | mode | p50 ms (C=1) | p95 ms (C=1) | queries/s (C=16) | p95 ms (C=16) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for row in r["search"]:
        for mode in ("dense", "hybrid"):
            s = row[mode]
            lines.append(
                f"| {row['notes']:,} | {mode} | {s['c1']['p50_ms']} | {s['c1']['p95_ms']} | "
                f"{s['c16']['per_s']} | {s['c16']['p95_ms']} |"
            )
    names = sorted({n for row in r["search"] for n in row.get("rss_mib", {})})
    if names:
        lines += [
            "",
            "Resident memory by process at each size, MiB:",
            "",
            "| notes | " + " | ".join(names) + " |",
            "|---:|" + "---:|" * len(names),
        ]
        for row in r["search"]:
            cells = " | ".join(str(row.get("rss_mib", {}).get(n, "-")) for n in names)
            lines.append(f"| {row['notes']:,} | {cells} |")
    lines += ["", f"Bulk load into the store: {r['bulk_load_notes_per_s']} notes/s."]
    return lines


def scale_markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    return "\n".join(
        [
            f"# amem search at scale, {r['date']}",
            "",
            f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Python "
            f"{m['python']}, embedding backend {m['embedding_backend']}; took {r['took_s']} s. "
            "Notes are synthetic: the corpus' real embeddings, each reused with a little "
            "Gaussian noise, bulk-loaded straight into the store; queries are real questions "
            "through the REST API. No evolution service runs.",
            "",
            *search_table(r),
            "",
        ]
    )


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = [row["notes"] for row in r["search"]]
    for mode, colour in (("dense", "tab:blue"), ("hybrid", "tab:orange")):
        for q, style in (("p50_ms", "-"), ("p95_ms", "--")):
            ys = [row[mode]["c1"][q] for row in r["search"]]
            ax.plot(sizes, ys, style, color=colour, marker="o", label=f"{mode} {q[:3]}")
    ax.set_xscale("log")
    ax.set_xlabel("notes in the tenant")
    ax.set_ylabel("search latency, ms (REST, C=1)")
    ax.set_title(f"amem search latency ({r['machine']['cores']} cores, {r['date']})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
