"""geventipc: node-ipc's event API for Python on gevent."""
from setuptools import find_packages, setup

setup(
    name="geventipc",
    version="0.1.0",
    description="Inter-process communication on gevent, modelled on node-ipc",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["geventipc", "geventipc.*"]),
    package_data={"geventipc": ["py.typed"]},
    python_requires=">=3.9",
    install_requires=["gevent>=23.9", "msgpack>=1.0.4", "loguru>=0.7", "orjson>=3.9"],
    extras_require={
        "test": ["pytest>=7", "pytest-timeout>=2.1", "hypothesis>=6", "trustme>=1.1", "mypy>=1.5"],
        "bench": ["matplotlib>=3.7"],
        "fuzz": ["atheris>=2.3"],
    },
    entry_points={"console_scripts": ["geventipc=geventipc.cli:main"]},
    classifiers=["Framework :: gevent", "Programming Language :: Python :: 3"],
)
