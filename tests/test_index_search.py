"""Fusion: the convex combination keeps score margins that reciprocal rank fusion throws away."""

from __future__ import annotations

import numpy as np
import pytest

from ragtune.index.search import convex, rrf, settled, single
from ragtune.index.stores.base import StoredHit


def _hit(i, score, vector=None):
    return StoredHit(id=f"c{i}", source="s", text=f"t{i}", position=i, score=score, vector=vector)


def test_convex_scales_each_signal_and_mixes_them():
    q = np.array([1.0, 0.0], np.float32)
    dense = [_hit(1, 0.9), _hit(2, 0.5)]
    # c3 only found by BM25: its cosine is computed from its vector
    lexical = [_hit(3, 10.0, np.array([0.7, 0.7141], np.float32)), _hit(1, 2.0, np.array([0.9, 0.43589], np.float32))]
    out = convex(dense, lexical, q, dense_weight=0.4)
    by = {s.hit.id: s for s in out}
    assert by["c3"].dense == pytest.approx(0.7, abs=1e-4)
    assert by["c2"].lexical == 0.0
    # cosine min-max over {0.9, 0.5, 0.7}; BM25 / max over {2, 0, 10}
    assert by["c1"].score == pytest.approx(0.4 * 1.0 + 0.6 * 0.2)
    assert by["c3"].score == pytest.approx(0.4 * 0.5 + 0.6 * 1.0)
    assert by["c2"].score == pytest.approx(0.0)
    assert [s.hit.id for s in out] == ["c3", "c1", "c2"]


def test_convex_weight_extremes_reduce_to_one_retriever():
    q = np.array([1.0, 0.0], np.float32)
    dense = [_hit(1, 0.9), _hit(2, 0.8)]
    lexical = [_hit(2, 5.0, np.array([0.8, 0.6], np.float32)), _hit(1, 1.0, np.array([0.9, 0.4359], np.float32))]
    assert [s.hit.id for s in convex(dense, lexical, q, 1.0)] == ["c1", "c2"]
    assert [s.hit.id for s in convex(dense, lexical, q, 0.0)] == ["c2", "c1"]


def test_a_large_bm25_margin_survives_convex_but_not_rrf():
    """BM25 is sure (score 20 vs 2), dense mildly prefers another chunk: RRF ties them, convex does not."""
    q = np.array([1.0, 0.0], np.float32)
    v_a, v_b = np.array([0.60, 0.8], np.float32), np.array([0.62, 0.7846], np.float32)
    dense = [_hit(2, 0.62), _hit(1, 0.60)]
    lexical = [_hit(1, 20.0, v_a), _hit(2, 2.0, v_b)]
    assert convex(dense, lexical, q, 0.4)[0].hit.id == "c1"
    fused = rrf(dense, lexical, q, 0.5)
    assert fused[0].score == pytest.approx(fused[1].score)


def test_empty_and_single_inputs():
    q = np.array([1.0, 0.0], np.float32)
    assert convex([], [], q) == []
    only = convex([_hit(1, 0.3)], [], q)
    assert len(only) == 1 and only[0].score == pytest.approx(0.4)
    lex = single([_hit(1, 3.0, np.array([0.6, 0.8], np.float32))], q, lexical=True)
    assert lex[0].score == 3.0 and lex[0].dense == pytest.approx(0.6)


def test_settled_ranks_equal_scores_by_chunk_id_whatever_order_they_came_in():
    hits = [_hit(5, 2.0), _hit(3, 8.0), _hit(9, 8.0), _hit(1, 2.0), _hit(7, 8.0)]
    assert [h.id for h in settled(hits, 4)] == ["c3", "c7", "c9", "c1"]
    assert [h.id for h in settled(list(reversed(hits)), 4)] == ["c3", "c7", "c9", "c1"]
