"""caltransfer_jax: calibration transfer between spectrometers with a spectral foundation model."""

from setuptools import find_packages, setup

setup(
    name="caltransfer_jax",
    version="0.1.0",
    description=(
        "Calibration transfer of NIR/IR/Raman calibrations between spectrometers: a JAX/Flax "
        "spectral foundation model and a leak-free benchmark against classical methods."
    ),
    python_requires=">=3.11,<3.12",
    # `configs` is a package too, so configuration files share parts by import.
    packages=find_packages(include=["caltransfer_jax", "caltransfer_jax.*", "configs"]),
    package_data={
        "caltransfer_jax.data": ["bundled/*.npz", "bundled/*.md", "bundled/*.toml"],
        "caltransfer_jax.models": ["bundled/**/*"],
    },
    install_requires=[
        "jax==0.10.2",
        "jaxlib==0.10.2",
        "flax==0.12.8",
        "optax==0.2.8",
        "orbax-checkpoint==0.12.8",
        "ott-jax==0.6.0",
        "pywavelets>=1.6",
        "numpy>=1.26,<3",
        "scipy>=1.13",
        "scikit-learn>=1.5",
        "matplotlib>=3.8",
        "tensorflow-datasets==4.9.10",
        "array-record>=0.5",
        "ml-collections==1.1.0",
        "absl-py>=2.1",
        "chex==0.1.92",
        "tensorboardX>=2.6",
        "jaxtyping>=0.2.36",
        "importlib_resources>=6",
        "jcamp>=1.3",
        "skops>=0.16",
        "markdown>=3.5",
    ],
    extras_require={"dev": ["pytest>=8", "pytest-xdist>=3.5", "ruff==0.17.6"]},
)
