"""model.net.prior=balanced: a per-count shift of the answers' log-probabilities, fitted on the
validation split after training.

The uniform prior divides the training split's count frequencies out, yet the ordinal head
still crowds the middle counts (issue 26: on validation the fitted shift is consistently up on
counts 1 and 5, down on 2-4). `fit` finds the shift `b` (one number per count, mean 0) that
minimises the class-balanced negative log-likelihood of the validation photos under
`log_softmax(log p + b)` (every count's photos weigh the same in total), then keeps `strength`
of it: the whole shift traded RMSE for macro accuracy on held-out halves of validation, half of
it kept most of the macro gain for a fraction of the RMSE (experiments/2026-12-03-all-224.md).
Counts without a validation photo keep a shift of 0.
"""

from __future__ import annotations

import torch

from bincount.errors import BincountError

STRENGTH = 0.5


def fit(log_probs: torch.Tensor, targets: torch.Tensor, strength: float = STRENGTH) -> list[float]:
    """The shift for (photos, counts) log-probabilities and their true count indices."""
    z = torch.as_tensor(log_probs, dtype=torch.float64)
    t = torch.as_tensor(targets, dtype=torch.long)
    if z.ndim != 2 or len(z) != len(t) or not len(t):
        raise BincountError(
            f"a balanced prior needs validation photos: got {len(t)} targets for log-probabilities "
            f"of shape {tuple(z.shape)}; train with a validation split (data.split)"
        )
    k = z.shape[1]
    photos = torch.bincount(t, minlength=k).double()
    present = photos > 0
    weight = torch.where(present, 1.0 / photos.clamp_min(1.0), 0.0)[t] / int(present.sum())
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([b], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")
    rows = torch.arange(len(t))

    def centred() -> torch.Tensor:
        shift = b * present
        return (shift - shift.sum() / present.sum()) * present

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = -(weight * (z + centred()).log_softmax(1)[rows, t]).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return [round(float(x) * strength, 6) for x in centred().detach()]
