"""Warnings raised by mixexp's estimators (besides scikit-learn's ConvergenceWarning)."""

__all__ = ["VanishingExpertWarning"]


class VanishingExpertWarning(UserWarning):
    """An expert kept less responsibility than its parameters need, even after re-seeding.

    Raised at the end of ``fit`` when, after the re-seeding rounds, an expert's
    total responsibility is below its number of parameters plus one (in
    average rows): the data do not support that many experts. The expert is
    kept (the model still has ``n_experts`` experts).
    """
