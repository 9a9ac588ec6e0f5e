"""The dataset names apfed accepts. Imports nothing heavy: the CLI checks a name before it loads torch."""

BUNDLED = ("mnist5k", "handwritten", "digits", "diabetes")  # shipped inside the package (apfed.data.bundled)
REGRESSION_SETS = ("diabetes",)  # bundled sets whose labels are numbers to predict
IMAGE_SETS = ("mnist", "fashion-mnist", "cifar10", "cifar100")  # read from a user-given directory (apfed.data.images)
