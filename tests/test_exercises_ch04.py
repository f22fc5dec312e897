"""Chapter 4's exercises reject the plausible wrong answers: a gated MLP sized like a GELU one, ALiBi
slopes without the interleaving, ratios averaged per seed."""

from __future__ import annotations

from collections import defaultdict

from exercise_checks import rejected

from labkit.exercises import ch04


def test_tiny_params_wrong_answers(capsys):
    def gated_like_gelu(V, T, d, n_layer, mlp, mlp_ratio, experts):
        return ch04.tiny_params(V, T, d, n_layer, "gelu" if mlp == "gated" else mlp, mlp_ratio, experts) \
            + (n_layer * d * round(mlp_ratio * d) if mlp == "gated" else 0)  # 3 matrices, but h = r d

    assert "case 2 of" in rejected(ch04.check_tiny_params, gated_like_gelu)

    def keeps_second_norm(V, T, d, n_layer, mlp, mlp_ratio, experts):
        return ch04.tiny_params(V, T, d, n_layer, mlp, mlp_ratio, experts) + (n_layer * d if mlp == "none" else 0)

    assert "case 3 of" in rejected(ch04.check_tiny_params, keeps_second_norm)

    def no_router(V, T, d, n_layer, mlp, mlp_ratio, experts):
        return ch04.tiny_params(V, T, d, n_layer, mlp, mlp_ratio, experts) - n_layer * d * experts

    assert "case 4 of" in rejected(ch04.check_tiny_params, no_router)


def test_alibi_and_ratio_wrong_answers(capsys):
    def geometric_always(n_head):
        return [2 ** (-8 * h / n_head) for h in range(1, n_head + 1)]

    assert "n_head=3" in rejected(ch04.check_alibi_slopes, geometric_always)

    def mean_of_seed_ratios(rows):
        by_seed = {(r["exposures"], r["seed"]): r["R"] for r in rows if r["variant"] == "reference"}
        per = defaultdict(list)
        for r in rows:
            ref = by_seed.get((r["exposures"], r["seed"]), by_seed[r["exposures"], 0])
            per[r["variant"], r["exposures"]].append(r["R"] / ref)
        return {k: sum(v) / len(v) for k, v in per.items()}

    assert "case 1 of" in rejected(ch04.check_ratios_to_reference, mean_of_seed_ratios)
