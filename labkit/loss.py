"""The training loss of a tied-unembedding language model: unembedding and cross-entropy in one step.

Why a module: for the lab's tiny models the output layer is a large part of the step. A 2-layer GPT of
width 32 on bioD (vocabulary 467, batch 128 × 19 targets) spends a large share of every training step
producing the (tokens × vocab) logits, their log-softmax, the one-hot gradient and the softmax
backward. ``F.cross_entropy(hidden @ W.T, targets)`` walks that 4.5 MB matrix about six times (matmul,
log-softmax, a zero fill and a scatter for the gradient, the log-softmax backward, two matmuls reading
it); :func:`linear_cross_entropy` turns each 256-row slice of logits into log-probabilities and then
probabilities while the slice is in the core's cache, keeps those probabilities as the gradient's
storage, and walks the matrix about three times. That pays with one torch thread per process (the
lab's default); the measured gains are in ``benchmarks/README.md``. Values and gradients equal
``F.cross_entropy``'s up to float rounding (tested in ``tests/test_loss.py``).

Used by :meth:`labkit.model.Transformer.loss` (hence ``labkit.train``) and by the batched trainer, on
the CPU in fp32; on a GPU or under autocast it falls back to ``F.cross_entropy`` on the logits (there
PyTorch's own kernels are the fast path).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100  # cross_entropy's ignore_index: positions that are not training targets
CHUNK_ROWS = 256  # rows of logits per slice: 256 × vocab 467 × 4 bytes = 0.5 MB, inside a 1-2 MB L2


class _LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``hidden @ weight.T`` against ``targets``; saves the softmax, not logits."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                chunk_rows: int) -> torch.Tensor:
        n = hidden.shape[0]
        index = targets.clamp(min=0)[:, None]  # ignored rows point at class 0 and are weighted 0
        probs = torch.empty(n, weight.shape[0], dtype=hidden.dtype, device=hidden.device)
        picked = torch.empty(n, 1, dtype=hidden.dtype, device=hidden.device)
        for start in range(0, n, chunk_rows):  # each slice: logits → log-probs → probs while in cache
            rows = slice(start, start + chunk_rows)
            torch.mm(hidden[rows], weight.t(), out=probs[rows])
            torch.log_softmax(probs[rows], dim=1, out=probs[rows])
            torch.gather(probs[rows], 1, index[rows], out=picked[rows])
            probs[rows].exp_()
        weights = (targets != IGNORE_INDEX).to(probs.dtype)[:, None]
        count = weights.sum()
        loss = -(picked * weights).sum() / count  # no targets: 0/0 = nan, as F.cross_entropy gives
        ctx.save_for_backward(hidden, weight, index, weights, probs, count)
        return loss

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        if getattr(ctx, "consumed", False):
            raise RuntimeError("linear_cross_entropy: a second backward through the same loss is not supported "
                               "(its saved softmax is reused as the gradient); recompute the loss instead")
        ctx.consumed = True
        hidden, weight, index, weights, probs, count = ctx.saved_tensors
        # d loss / d logits = (softmax - one_hot) × weight / count, built in the saved softmax's memory
        probs.scatter_add_(1, index, -torch.ones_like(weights))
        probs.mul_(weights * (grad / count.clamp(min=1)))  # no targets: zero gradient, as F.cross_entropy
        return probs @ weight, probs.t() @ hidden, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         chunk_rows: int = CHUNK_ROWS) -> torch.Tensor:
    """``F.cross_entropy(hidden @ weight.T, targets, ignore_index=IGNORE_INDEX)``, faster on a CPU.

    ``hidden``: (..., d) final hidden states; ``weight``: (vocab, d) unembedding; ``targets``: (...)
    class ids or IGNORE_INDEX. Returns the mean over the non-ignored targets (nan when there are none).
    Where the fused path has no advantage (not a CPU, autocast on, a dtype other than fp32) it *is*
    the expression above.
    """
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets = targets.reshape(-1)
    if (hidden.device.type != "cpu" or hidden.dtype != torch.float32 or weight.dtype != torch.float32
            or torch.is_autocast_enabled("cpu")):
        return F.cross_entropy(F.linear(hidden, weight).float(), targets, ignore_index=IGNORE_INDEX)
    return _LinearCrossEntropy.apply(hidden, weight, targets, chunk_rows)
