"""report/index.html: tables and plots of an evaluation, one self-contained file (plots embedded as PNG)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from ragtune.atomic import atomic_write
from ragtune.metrics import is_gold

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}details{margin:.3em 0}summary{cursor:pointer}
.hit{font-size:90%;color:#555;margin-left:1.5em}.ok{color:#070}.bad{color:#a00}img{max-width:100%}"""


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _ci(ci: list | None) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci and None not in ci else "–"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th{' class=l' if i == 0 else ''}>{html.escape(h)}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{' class=l' if i == 0 else ''}>{c if isinstance(c, str) else _fmt(c)}</td>"
                                     for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _plots(results: dict, per_variant: dict[str, list[dict]]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, v = list(results["variants"]), results["variants"]
    plots = {}
    if names:
        fig, ax = plt.subplots(figsize=(6, 3))
        means = [v[n].get("score") or 0.0 for n in names]
        errs = [[m - (v[n]["ci"]["score"][0] or m) for n, m in zip(names, means)],
                [(v[n]["ci"]["score"][1] or m) - m for n, m in zip(names, means)]]
        ax.bar(names, means, yerr=errs, capsize=6, color="#4c78a8")
        ax.set_ylabel(results["headline"]), ax.set_ylim(0, 1), ax.set_title("Quality per variant (95% bootstrap CI)")
        plots["quality"] = _png(fig)
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.boxplot([[r["latency_s"] for r in per_variant[n]] or [0] for n in names], showfliers=True)
        ax.set_xticks(range(1, len(names) + 1), names)
        ax.set_ylabel("seconds per answer"), ax.set_title("Latency distribution")
        plots["latency"] = _png(fig)
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.bar(names, [v[n].get("peak_rss_mb") or 0 for n in names], color="#f58518")
        ax.set_ylabel("MiB"), ax.set_title("Each variant's own peak RSS (from its start)")
        plots["memory"] = _png(fig)
    retrieval = results.get("retrieval")
    if retrieval:
        fig, ax = plt.subplots(figsize=(5, 2.6))
        keys = ["recall@1", f"recall@{retrieval['k']}", "mrr"]
        ax.bar(keys, [retrieval[k] for k in keys], color="#54a24b")
        ax.set_ylim(0, 1), ax.set_title("Retrieval quality")
        plots["retrieval"] = _png(fig)
    return plots


def _drilldown(per_variant: dict[str, list[dict]], ranked: dict[str, list[str]], key: str, limit: int = 300) -> str:
    by_id: dict[str, dict[str, dict]] = {}
    for variant, records in per_variant.items():
        for r in records:
            by_id.setdefault(r["id"], {})[variant] = r
    parts = []
    for qid, recs in list(by_id.items())[:limit]:
        first = next(iter(recs.values()))
        marks = " ".join(f"{v}: {r['scores'].get(key, r['scores']['f1']):.2f}" for v, r in recs.items())
        lines = [f"<details><summary>{html.escape(first['question'])} <small>({html.escape(marks)})</small></summary>",
                 f"<div>gold: {html.escape(' | '.join(first['answers'][:3]) or '(unanswerable)')}"
                 f"{' · seen in training' if first.get('seen') else ''}</div>"]
        if qid in ranked:
            gold = first.get("gold_sources", [])
            lines.append("<div>retrieved: " + ", ".join(
                f"<span class={'ok' if is_gold(s, gold) else 'bad'}>{html.escape(s)}</span>" for s in ranked[qid][:5])
                + "</div>")
        for variant, r in recs.items():
            lines.append(f"<div><b>{html.escape(variant)}</b>: {html.escape(r['prediction'][:400])} "
                         f"<small>(EM {r['scores']['em']:.0f}, F1 {r['scores']['f1']:.2f}, "
                         f"contains {r['scores'].get('contains', 0):.0f}, {r['latency_s']:.2f}s)</small></div>")
            for h in r.get("hits", [])[:3]:
                lines.append(f"<div class=hit>[{html.escape(h['source'])}] {html.escape(h['text'][:300])}</div>")
        parts.append("\n".join(lines) + "</details>")
    return "\n".join(parts)


def render(results: dict, per_variant: dict[str, list[dict]], ranked: dict[str, list[str]]) -> str:
    plots = _plots(results, per_variant)
    v, qa = results["variants"], results["qa"]
    metric_cols = list(dict.fromkeys([results["headline"], "em", "f1", "contains", "rouge_l"]))
    rows = [[n] + [s.get(m) for m in metric_cols] + [_ci(s["ci"]["score"]), s.get("groundedness"),
            s.get("self_cited"), s["abstention"]["rate"], s["latency_s"]["p50"], s["latency_s"]["p95"], s.get("peak_rss_mb")]
            for n, s in v.items()]
    parts = [f"<h1>ragtune evaluation: {html.escape(qa['name'])}</h1>",
             f"<p>{qa['n']} questions, metric <b>{html.escape(results['headline'])}</b>"
             f"{' (' + html.escape(qa['metric_reason']) + ')' if qa.get('metric_reason') else ''}, base model "
             f"<code>{html.escape(str(results['models']['base']))}</code>, fine-tuned "
             f"<code>{html.escape(str(results['models']['finetuned']))}</code>. Best: <b>{_fmt(results.get('best'))}</b>"
             f"{'; tied with ' + ', '.join(results['tied_with_best']) if results.get('tied_with_best') else ''}.</p>",
             _synthetic(qa), _skipped(qa),
             "<h2>Quality</h2>", _table(["variant"] + metric_cols + ["95% CI", "groundedness", "self-cited", "abstained",
                                                                      "p50 s", "p95 s", "peak MiB"], rows),
             *_groups(v, metric_cols),
             plots.get("quality", ""),
             "<h3>Pairwise (paired bootstrap; a tie when the CI of the difference contains 0)</h3>",
             _table(["a − b", "difference", "95% CI", "verdict"],
                    [[f"{c['a']} − {c['b']}", c["diff"], _ci(c["ci"]), c["verdict"]] for c in results["comparisons"]])]
    r = results.get("retrieval")
    if r:
        warning = unindexed_warning(results)
        parts += ["<h2>Retrieval</h2>", f"<p class=bad>{html.escape(warning)}</p>" if warning else "",
                  _table(["questions", "recall@1", f"recall@{r['k']}", "MRR@10"],
                         [[str(r["n"]), r["recall@1"], r["recall@k"], r["mrr"]]]), plots.get("retrieval", "")]
    parts += ["<h2>Latency</h2>", plots.get("latency", ""), "<h2>Memory</h2>", plots.get("memory", "")]
    t = results.get("training")
    parts += ["<h2>Training cost</h2>", _table(["seconds", "tokens", "examples", "tokens/s"],
              [[t["seconds"], t["tokens"], t["examples"], t["tokens_per_second"]]]) if t else
              "<p>No training report found beside the fine-tuned model.</p>"]
    gen = [[n, s["generalisation"]["seen"]["score"], s["generalisation"]["held_out"]["score"], s["generalisation"]["gap"]]
           for n, s in v.items() if s.get("generalisation")]
    if gen:
        parts += ["<h2>Generalisation (seen in training vs held out)</h2>",
                  _table(["variant", "seen", "held out", "gap"], gen)]
    f = results.get("freshness")
    if f and "variants" in f:
        parts += [f"<h2>Freshness</h2><p>{f['n_changed']} facts changed, {f['n_new']} added; KB update took "
                  f"{f['kb_update_seconds']:.2f} s, retraining would take {_fmt(f['retrain_seconds'], 0)} s.</p>",
                  _table(["variant", "fresh (all)", "changed: new fact", "changed: old fact", "new facts"],
                         [[n, s["fresh"], s["changed_fresh"], s["changed_stale"], s["new_facts"]]
                          for n, s in f["variants"].items()])]
    parts += _choice(results)
    parts += ["<h2>Questions</h2>", _drilldown(per_variant, ranked, results["headline"])]
    return (f"<!doctype html><html><head><meta charset=utf-8><title>ragtune evaluation</title><style>{_CSS}</style>"
            f"</head><body>{''.join(parts)}</body></html>")


def unindexed_warning(results: dict[str, Any]) -> str | None:
    """The console's and report's warning about gold sources that name no ingested document, or None."""
    r = results.get("retrieval") or {}
    n = r.get("gold_sources_not_indexed")
    if not n:
        return None
    return (f"warning: {n} of {r['n']} questions name gold sources that match no ingested document (compared by "
            "path suffix); recall counts them as misses: check the names in gold_sources against `ragtune sources`")


def reach_note(results: dict[str, Any]) -> str | None:
    """When fewer than half the questions had their answer or gold source within the prompt (``reach``, in
    every setting tuning tried, else RAG's on the test part): RAG is limited by retrieval, and the levers."""
    trials = ((results.get("choose") or {}).get("tune") or {}).get("trials") or []
    reaches, where = [t["reach"] for t in trials if t.get("reach") is not None], "dev questions in every setting tuned"
    if not reaches:
        rag = results.get("variants", {}).get("rag") or {}
        reaches, where = ([rag["reach"]] if rag.get("reach") is not None else []), "test questions"
    if not reaches or max(reaches) >= 0.5:
        return None
    return (f"RAG is limited by retrieval here: at best {max(reaches):.0%} of the {where} had their answer or "
            "gold source within the prompt (reach). Levers: more passages (retrieval.k, choose.k candidates), "
            "other chunks (chunking.chunk_tokens, chunking.overlap_tokens), a reranker (retrieval.rerank = true "
            "with retrieval.reranker_model), another embedder (embedder.model).")


def _synthetic(qa: dict) -> str:
    """Where the questions came from, at the top: all synthesised from DOCS, or a top-up of the team's."""
    if qa.get("synthetic"):
        return ("<p class=bad><b>No QA file: every question here was synthesised from the documents</b> "
                "(held-out chunks, never used for training synthesis). The verdict is on those questions: add "
                "your own for one on your task.</p>")
    if qa.get("n_synthetic"):
        return (f"<p>{qa['n'] - qa['n_synthetic']} of your questions and {qa['n_synthetic']} synthesised from the "
                "documents (chunks kept out of training synthesis); each group has its own table below.</p>")
    return ""


def _groups(variants: dict[str, Any], cols: list[str]) -> list[str]:
    """The team's questions and the synthetic ones, each its own table (one evaluation, summarised per group)."""
    parts = []
    for group, title in (("team", "Your questions"), ("synthetic", "Synthetic questions (from the documents)")):
        rows = [[n] + [s["groups"][group].get(m) for m in cols] + [_ci(s["groups"][group]["ci"]["score"])]
                for n, s in variants.items() if s.get("groups")]
        if rows:
            n = next(s["groups"][group]["n"] for s in variants.values() if s.get("groups"))
            parts += [f"<h3>{title}: {n}</h3>", _table(["variant"] + cols + ["95% CI"], rows)]
    return parts


def _skipped(qa: dict) -> str:
    """The QA lines left out (bad types, gold answers that cannot be scored), named at the top of the report."""
    skipped = qa.get("skipped") or []
    if not skipped:
        return ""
    items = "".join(f"<li>line {html.escape(str(s['line']))}: {html.escape(s['reason'])}</li>" for s in skipped[:50])
    more = f"<li>… and {len(skipped) - 50} more (results.json qa.skipped)</li>" if len(skipped) > 50 else ""
    return (f"<p class=bad><b>{len(skipped)} line(s) of the QA set skipped</b> (not scored; --strict refuses "
            f"them):</p><ul>{items}{more}</ul>")


def _choice(results: dict) -> list[str]:
    """`ragtune choose`: the verdict with its reasons, and what was chosen on the dev part and why."""
    parts: list[str] = []
    advice = results.get("advice")
    if advice:
        from ragtune.evaluate.verdict import headline

        parts += [f"<h2>Recommendation: {html.escape(headline(advice))}</h2><ul>"
                  + "".join(f"<li>{html.escape(r)}</li>" for r in advice["reasons"]) + "</ul>"]
    c = results.get("choose")
    if not c:
        return parts
    data, split, tune = c.get("train_data", {}), c.get("split", {}), c.get("tune", {})
    available = data.get("available", 0)
    setting = "choose.max_synthetic_examples" if data.get("synthetic") else "choose.max_train_examples"
    sampled = (f" (a seeded sample of {available}: {setting}, a time budget; all {available} "
               f"would take about {available / max(data.get('examples', 1), 1):.1f}x the training time; "
               "<code>--train-all</code> uses every row)"
               if available > data.get("examples", available) else "")
    parts += ["<h2>How this was chosen</h2>",
              f"<p>{split.get('dev', '?')} dev questions (tuning only) and {split.get('test', '?')} test questions "
              f"(the scores above), split with seed {split.get('seed', 0)}. Training data: "
              f"<b>{html.escape(str(data.get('origin', '?')))}</b>, {data.get('examples', '?')} examples"
              f"{sampled}"
              f"{' (synthetic: questions generated from the documents)' if data.get('synthetic') else ''}; "
              f"{data.get('dropped_as_test_questions', 0)} dropped for repeating a test question.</p>"]
    note = reach_note(results)
    if note:
        parts.append(f"<p class=bad><b>{html.escape(note)}</b> What tuning measured:</p>")
    if tune.get("trials"):
        parts += [f"<p>{html.escape(tune.get('why', ''))}. Chosen: <code>{html.escape(str(tune.get('chosen')))}"
                  "</code>, saved to the knowledge base's ragtune.toml.</p>",
                  _table(["k", "context sentences", "relevance gate", "template", "dev score", "answer within reach",
                          "p50 s"],
                         [[t["k"], t["context_sentences"], t.get("min_relevance", "-"), t.get("template", "-"),
                           t["score"], t.get("reach", "-"), t["latency_p50"]] for t in tune["trials"]])]
    return parts


def write_report(out: Path, results: dict, per_variant: dict[str, list[dict]], ranked: dict[str, list[str]]) -> Path:
    """Write out/index.html atomically and return its path."""
    return atomic_write(Path(out) / "index.html", render(results, per_variant, ranked))
