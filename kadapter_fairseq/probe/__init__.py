"""Zero-shot probes of a base and its adapters (``kadapter-probe``).

``lama``: LAMA and LAMA-UHN (Petroni et al. 2019; Poerner et al. 2019), the paper's
Tables 5 and 6. See docs/probing.md.
"""
