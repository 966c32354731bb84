"""TensorFlow maths that models and losses share, below both: it imports neither
(``angular``: the additive angular margin logits of Sabri et al. Eq. 2)."""
