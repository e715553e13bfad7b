from setuptools import find_packages, setup

setup(
    name="det_dcn",
    version="0.1.0",
    description="Faster R-CNN with deformable and dilated convolution and deformable RoI pooling, "
    "in plain PyTorch on every device",
    packages=find_packages(exclude=("tests", "tests.*")),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",  # det_dcn/__init__.py: MIN_TORCH_VERSION
        "torchvision>=0.19",
        "yacs>=0.1.8",
        "pycocotools>=2.0.6",
        "opencv-python-headless>=4.5",
        "tqdm>=4.60",
    ],
    extras_require={
        "test": ["pytest>=7"],
        "tensorboard": ["tensorboard"],
    },
)
