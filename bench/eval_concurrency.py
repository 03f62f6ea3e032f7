"""RAG answers against an OpenAI-compatible endpoint, generator.concurrency 1 vs 8: wall time and equality.

    flock /tmp/ragtune-bench.lock python bench/eval_concurrency.py [--questions 48] [--delay-ms 150]

The endpoint is a tiny stub server on 127.0.0.1 inside a loopback-only network namespace (the script
re-runs itself under ``unshare -n``): each /v1/chat/completions reply takes ``--delay-ms`` (standing
in for a GPU server's generation time, which batches concurrent requests) and answers with a
deterministic digest of the prompt. The answers go through the product's path: ``RAG(kb).ask`` (hybrid
retrieval from the squad-mini knowledge base cached by bench/retrieval.py, the prompt, the
OpenAI-compatible generator with its retries) run by ``iter_answers`` at each concurrency; rounds are
interleaved and the best of each kept. The answers must be identical in content and order.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _netns import main_in_namespace  # noqa: E402
from _report import append_section  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def stub_server(delay_s: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            time.sleep(delay_s)
            digest = hashlib.sha256(json.dumps(body["messages"]).encode()).hexdigest()[:12]
            reply = json.dumps({"choices": [{"message": {"content": f"answer {digest} [1]"}}]}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run(args) -> None:
    from ragtune.config import load_settings
    from ragtune.evaluate.qa import load_squad
    from ragtune.index.knowledge_base import KnowledgeBase
    from ragtune.parallel import iter_answers
    from ragtune.rag import RAG

    server = stub_server(args.delay_ms / 1000)
    kb_dir = args.cache / "squad-mini"
    settings = load_settings(kb_dir, {"generator.backend": "openai", "generator.model": "stub",
                                      "generator.base_url": f"http://127.0.0.1:{server.server_port}/v1"})
    kb = KnowledgeBase(kb_dir, settings=settings)
    if len(kb) == 0:
        sys.exit(f"{kb_dir}: empty; run bench/retrieval.py --datasets squad-mini first")
    questions = [item.question for item in load_squad(DATA / "squad-mini").items[:args.questions]]
    rag = RAG(kb, settings=settings)
    for q in questions:
        kb.search(q)  # query vectors remembered: the rounds measure the endpoint calls, not the embedder
    best, answers = {}, {}
    for _ in range(args.rounds):
        for concurrency in (1, 8):
            start = time.perf_counter()
            out = list(iter_answers(rag.ask, questions, concurrency))
            best[concurrency] = min(best.get(concurrency, 1e9), time.perf_counter() - start)
            answers[concurrency] = [(a.text, [c.source for c in a.citations]) for a in out]
    same = answers[1] == answers[8]
    ratio = best[1] / best[8]
    print(f"concurrency 1: {best[1]:.2f} s, 8: {best[8]:.2f} s, speed-up {ratio:.2f}x, identical: {same}")
    text = (f"{len(questions)} squad-mini questions through `RAG(kb).ask` (hybrid retrieval, prompt, "
            "OpenAI-compatible generator) run by `ragtune.parallel.iter_answers`, against a stub "
            f"endpoint on loopback (in a network namespace) that takes {args.delay_ms} ms per reply and handles "
            f"requests in parallel, as a batching GPU server does; best of {args.rounds} interleaved rounds. Other "
            "agents were running on the machine.\n\n| generator.concurrency | wall time s | answers identical to "
            f"concurrency 1 |\n|---|---|---|\n| 1 | {best[1]:.2f} | – |\n| 8 | {best[8]:.2f} | {'yes' if same else 'NO'} |"
            f"\n\nSpeed-up: **{ratio:.2f}×**.")
    if args.no_report:
        print(text)
    else:
        append_section("Endpoint concurrency: generator.concurrency 1 vs 8", text, command=args.command)
    server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=48)
    parser.add_argument("--delay-ms", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "ragtune-bench")
    main_in_namespace(parser, run)


if __name__ == "__main__":
    main()
