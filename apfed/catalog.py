"""The dataset names apfed accepts. Imports nothing heavy: the CLI checks a name before it loads torch."""

BUNDLED = ("mnist5k", "handwritten", "digits")  # shipped inside the package (apfed.data.bundled)
IMAGE_SETS = ("mnist", "fashion-mnist", "cifar10", "cifar100")  # read from a user-given directory (apfed.data.images)
