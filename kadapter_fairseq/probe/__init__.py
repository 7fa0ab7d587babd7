"""Zero-shot probes of a base and its adapters (``kadapter-probe``).

``lama``: LAMA and LAMA-UHN (Petroni et al. 2019; Poerner et al. 2019), the paper's
Tables 5 and 6. ``run_lama(...) -> results`` is the probe as a function (what the command and the
experiment runner call). See docs/probing.md.
"""


def run_lama(*args, **kwargs) -> dict:
    """``kadapter_fairseq.probe.run.run_lama`` (imported on first use: it imports torch and fairseq)."""
    from .run import run_lama as run

    return run(*args, **kwargs)
