"""Order verification: is the bin what the order says?

`orders` (order streams from the bins' metadata, with a picker's errors; numpy only),
`order_model` (the order-aware verdict: a small logistic model over the photo's count
probabilities and the stated order; numpy only), `check` (orders against a model: a split's
stream, the verifier fitted on validation, an order file's verdicts scored), `calibration`
(temperature scaling and the verdict thresholds, fitted on validation into calibration.json).
The photo-only verdict helpers are `bincount.inference.verdicts`, where serving uses them.
"""
